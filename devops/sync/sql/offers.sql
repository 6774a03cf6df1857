-- What a database offers a restore: the extensions its server can create (pg_available_extensions: the
-- control files it has), RDS's rds.allowed_extensions (NULL elsewhere; '*' or empty: no limit), its roles,
-- Neon's project size limit (neon.max_cluster_size, in MB; NULL elsewhere, 0 or less: none) and the size of
-- what counts against it (every database the role may connect to). Five columns, for database.SERVER.
(SELECT coalesce(jsonb_agg(name ORDER BY name), '[]') FROM pg_available_extensions),
current_setting('rds.allowed_extensions', true),
(SELECT coalesce(jsonb_agg(rolname ORDER BY rolname), '[]') FROM pg_roles),
current_setting('neon.max_cluster_size', true),
(SELECT sum(pg_database_size(oid)) FROM pg_database WHERE has_database_privilege(oid, 'CONNECT'))
