-- The schemas the full replace keeps (their objects emptied): public, and those holding an extension or an
-- extension's objects. Slot: {own_schemas} (own_schemas.sql).
    SELECT n.nspname FROM pg_namespace n WHERE {own_schemas} AND (n.nspname = 'public'
        OR EXISTS (SELECT 1 FROM pg_depend d WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
                   AND d.classid IN ('pg_class'::regclass, 'pg_proc'::regclass, 'pg_type'::regclass)
                   AND n.oid = CASE d.classid WHEN 'pg_class'::regclass
                                    THEN (SELECT relnamespace FROM pg_class WHERE oid = d.objid)
                                  WHEN 'pg_proc'::regclass THEN (SELECT pronamespace FROM pg_proc WHERE oid = d.objid)
                                  ELSE (SELECT typnamespace FROM pg_type WHERE oid = d.objid) END)
        OR EXISTS (SELECT 1 FROM pg_extension e WHERE e.extnamespace = n.oid))
