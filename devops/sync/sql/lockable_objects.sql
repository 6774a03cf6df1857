-- How many locks dropping everything of the database's own takes (the prelude), or creating it again (the
-- restore): one per object the drop visits, which is one per row of these catalogs in the database's own
-- schemas (not an extension's): relations (tables, partitions, indexes, sequences, views; a table's TOAST
-- table and its index), types (with each table's row type and array type), routines, constraints,
-- triggers, column defaults, rules (a view's), policies, and the schemas themselves.
-- Slot: {own_schemas} (own_schemas.sql).
WITH own AS (SELECT n.oid FROM pg_namespace n WHERE {own_schemas}),
ext AS (SELECT classid, objid FROM pg_depend WHERE deptype = 'e'),
relations AS (
    SELECT c.oid, c.reltoastrelid FROM pg_class c
    WHERE c.relnamespace IN (SELECT oid FROM own) AND ('pg_class'::regclass, c.oid) NOT IN (SELECT * FROM ext)
)
SELECT (SELECT count(*) FROM own)
     + (SELECT count(*) FROM relations)
     + (SELECT 2 * count(*) FROM relations WHERE reltoastrelid <> 0)
     + (SELECT count(*) FROM pg_type t WHERE t.typnamespace IN (SELECT oid FROM own)
          AND ('pg_type'::regclass, t.oid) NOT IN (SELECT * FROM ext))
     + (SELECT count(*) FROM pg_proc p WHERE p.pronamespace IN (SELECT oid FROM own)
          AND ('pg_proc'::regclass, p.oid) NOT IN (SELECT * FROM ext))
     + (SELECT count(*) FROM pg_constraint k WHERE k.connamespace IN (SELECT oid FROM own))
     + (SELECT count(*) FROM pg_trigger g WHERE g.tgrelid IN (SELECT oid FROM relations))
     + (SELECT count(*) FROM pg_attrdef d WHERE d.adrelid IN (SELECT oid FROM relations))
     + (SELECT count(*) FROM pg_rewrite r WHERE r.ev_class IN (SELECT oid FROM relations))
     + (SELECT count(*) FROM pg_policy y WHERE y.polrelid IN (SELECT oid FROM relations))
