-- The full replace's first statements: BEGIN the restore's transaction, and drop everything of the
-- target's own (not an extension's) inside it, so that afterwards it holds exactly what the archive creates.
-- Every statement is built from the catalogs before the first one runs, and each drops all objects of one
-- kind at once with IF EXISTS and CASCADE: what an earlier CASCADE took (a view over a dropped table, a
-- function taking a dropped type) is skipped by name, so no order of visiting matters and no name is read
-- back from a dropped object's OID. Schemas go whole, except those of kept_schemas.sql, which are kept
-- (their own objects emptied) and whose CREATE SCHEMA is left out of the restore. psql sends the three
-- statements as one query (its \; joins them): one round trip.
-- Slots filled by devops/sync/sql (load): {own_schemas} (own_schemas.sql), {kept_schemas} (kept_schemas.sql).
BEGIN\;
SET LOCAL client_min_messages = warning\;
DO $devops$
DECLARE
    statements text[];
    statement text;
BEGIN
    WITH kept AS (SELECT oid FROM pg_namespace WHERE nspname IN ({kept_schemas})),
    own AS (  -- not a member of an extension
        SELECT classid, objid FROM pg_depend WHERE deptype = 'e'
    ),
    objects(kind, position, name) AS (  -- names as text, schema-qualified and quoted
        SELECT 'SCHEMA', 0, format('%I', n.nspname) FROM pg_namespace n
        WHERE {own_schemas} AND n.oid NOT IN (SELECT oid FROM kept)
        UNION ALL
        SELECT CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'S' THEN 'SEQUENCE'
                   WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END,
               CASE c.relkind WHEN 'v' THEN 1 WHEN 'm' THEN 2 WHEN 'f' THEN 3 WHEN 'S' THEN 5 ELSE 4 END,
               format('%s.%I', c.relnamespace::regnamespace, c.relname)
        FROM pg_class c WHERE c.relnamespace IN (SELECT oid FROM kept) AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
          AND ('pg_class'::regclass, c.oid) NOT IN (SELECT * FROM own)
        UNION ALL
        SELECT 'ROUTINE', 6, format('%s.%I(%s)', p.pronamespace::regnamespace, p.proname,
                                    pg_get_function_identity_arguments(p.oid))
        FROM pg_proc p WHERE p.pronamespace IN (SELECT oid FROM kept)
          AND ('pg_proc'::regclass, p.oid) NOT IN (SELECT * FROM own)
        UNION ALL
        SELECT CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END, 7,
               format('%s.%I', t.typnamespace::regnamespace, t.typname)
        FROM pg_type t WHERE t.typnamespace IN (SELECT oid FROM kept)
          AND (t.typtype IN ('e', 'r', 'd')
               OR (t.typtype = 'c' AND (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c'))
          AND ('pg_type'::regclass, t.oid) NOT IN (SELECT * FROM own)
        UNION ALL
        SELECT 'COLLATION', 8, format('%s.%I', x.collnamespace::regnamespace, x.collname)
        FROM pg_collation x WHERE x.collnamespace IN (SELECT oid FROM kept)
          AND ('pg_collation'::regclass, x.oid) NOT IN (SELECT * FROM own)
        UNION ALL
        SELECT 'CONVERSION', 9, format('%s.%I', x.connamespace::regnamespace, x.conname)
        FROM pg_conversion x WHERE x.connamespace IN (SELECT oid FROM kept)
          AND ('pg_conversion'::regclass, x.oid) NOT IN (SELECT * FROM own)
        UNION ALL
        SELECT 'TEXT SEARCH CONFIGURATION', 10, format('%s.%I', x.cfgnamespace::regnamespace, x.cfgname)
        FROM pg_ts_config x WHERE x.cfgnamespace IN (SELECT oid FROM kept)
          AND ('pg_ts_config'::regclass, x.oid) NOT IN (SELECT * FROM own)
        UNION ALL
        SELECT 'TEXT SEARCH DICTIONARY', 11, format('%s.%I', x.dictnamespace::regnamespace, x.dictname)
        FROM pg_ts_dict x WHERE x.dictnamespace IN (SELECT oid FROM kept)
          AND ('pg_ts_dict'::regclass, x.oid) NOT IN (SELECT * FROM own)
        UNION ALL
        SELECT 'OPERATOR', 12, format('%s.%s(%s, %s)', o.oprnamespace::regnamespace, o.oprname,
                                      CASE o.oprleft WHEN 0 THEN 'NONE' ELSE format_type(o.oprleft, NULL) END,
                                      format_type(o.oprright, NULL))
        FROM pg_operator o WHERE o.oprnamespace IN (SELECT oid FROM kept)
          AND ('pg_operator'::regclass, o.oid) NOT IN (SELECT * FROM own)
    )
    SELECT array_agg(format('DROP %s IF EXISTS %s CASCADE', kind, names) ORDER BY position)
    INTO statements
    FROM (SELECT kind, min(position) AS position, string_agg(name, ', ') AS names FROM objects GROUP BY kind) k;
    FOREACH statement IN ARRAY coalesce(statements, '{}') LOOP
        EXECUTE statement;
    END LOOP;
    -- Large objects are not in any schema; the archive recreates its own under their original OIDs.
    PERFORM pg_catalog.lo_unlink(l.oid) FROM pg_largeobject_metadata l WHERE pg_has_role(l.lomowner, 'USAGE');
END
$devops$;
