-- A condition on pg_namespace n: a schema of the database's own (not a system schema, not an extension's, not
-- one the sync leaves alone). Slot: {left_alone_schemas} (devops/sync/scope.py).
    n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_%'
    AND n.nspname <> ALL ({left_alone_schemas})
    AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_namespace'::regclass AND d.objid = n.oid
                    AND d.deptype = 'e')
