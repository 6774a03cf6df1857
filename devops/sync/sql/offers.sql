-- What a database offers a restore: the extensions its server can create (pg_available_extensions: the
-- control files it has), RDS's rds.allowed_extensions (NULL elsewhere; '*' or empty: no limit), and its
-- roles. Three columns, for the server's read (database.SERVER).
(SELECT coalesce(jsonb_agg(name ORDER BY name), '[]') FROM pg_available_extensions),
current_setting('rds.allowed_extensions', true),
(SELECT coalesce(jsonb_agg(rolname ORDER BY rolname), '[]') FROM pg_roles)
