-- What a database offers a restore: the extensions its server can create (pg_available_extensions: the
-- control files it has), RDS's rds.allowed_extensions (NULL elsewhere; '*' or empty: no limit), its roles,
-- Neon's ceiling in bytes ({neon_size_limit}: NULL elsewhere, -1 none) and the size of what counts against it
-- (every database the role may connect to). Five columns, for database.SERVER.
(SELECT coalesce(jsonb_agg(name ORDER BY name), '[]') FROM pg_available_extensions),
current_setting('rds.allowed_extensions', true),
(SELECT coalesce(jsonb_agg(rolname ORDER BY rolname), '[]') FROM pg_roles),
{neon_size_limit},
(SELECT sum(pg_database_size(oid)) FROM pg_database WHERE has_database_privilege(oid, 'CONNECT'))
