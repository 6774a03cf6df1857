-- What a restore of this database needs its target to have already: the extensions it creates (pg_dump's
-- CREATE EXTENSION; plpgsql is in every database); the roles its row-level security policies name, each with
-- those policies ("schema.table policy"): owners and grants are left out of the dump on purpose, but a policy
-- keeps the roles it names; and the room its data takes (the database's size). Three columns, for
-- read_tables' {columns}. Slots: {own_schemas}, {left_alone_extensions} (devops/sync/scope.py: not created).
(SELECT coalesce(jsonb_agg(extname ORDER BY extname), '[]') FROM pg_extension
 WHERE extname <> 'plpgsql' AND extname <> ALL ({left_alone_extensions})),
(SELECT coalesce(jsonb_object_agg(rolname, policies), '{}')
 FROM (SELECT r.rolname, jsonb_agg(format('%s.%s %s', n.nspname, c.relname, p.polname)
                                   ORDER BY n.nspname, c.relname, p.polname) AS policies
       FROM pg_policy p
       JOIN pg_class c ON c.oid = p.polrelid
       JOIN pg_namespace n ON n.oid = c.relnamespace
       CROSS JOIN LATERAL unnest(p.polroles) AS named(oid)
       JOIN pg_roles r ON r.oid = named.oid
       WHERE {own_schemas}
       GROUP BY r.rolname) AS named_roles),
pg_database_size(current_database())
