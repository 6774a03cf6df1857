-- A hash of the database's own schema, from the catalogs (no pg_dump, no round trip of its own): one line
-- per definition in its own schemas (schemas, relations and their options and partition bounds, columns
-- with type, collation, NOT NULL, identity, generation and default, views' queries, indexes, constraints,
-- triggers, routines, types, sequences, policies, rules, comments) and per extension, sorted, md5'd. Any
-- DDL changes it; the same schema gives the same hash on the same server major (guard.changes compares
-- hashes taken by the same method and major only). Slots: {own_schemas} (own_schemas.sql); what the sync leaves
-- alone, {left_alone_schemas} and {left_alone_extensions} (devops/sync/scope.py).
SELECT md5(coalesce(string_agg(line, E'\n' ORDER BY line), '')) FROM (
    WITH own AS (SELECT n.oid FROM pg_namespace n WHERE {own_schemas}),
    ext AS (SELECT classid, objid FROM pg_depend WHERE deptype = 'e'),
    rel AS (
        SELECT c.oid, c.relkind FROM pg_class c
        WHERE c.relnamespace IN (SELECT oid FROM own) AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f', 'c', 'i', 'I')
          AND ('pg_class'::regclass, c.oid) NOT IN (SELECT * FROM ext)
    )
    SELECT format('schema %I', n.nspname) FROM pg_namespace n WHERE n.oid IN (SELECT oid FROM own)
    UNION ALL
    SELECT format('relation %s %s %s %s %s', c.oid::regclass, c.relkind, c.relpersistence, c.reloptions,
                  pg_get_expr(c.relpartbound, c.oid))
    FROM pg_class c WHERE c.oid IN (SELECT oid FROM rel)
    UNION ALL
    SELECT format('column %s.%I %s %s %s %s %s %s', a.attrelid::regclass, a.attname,
                  format_type(a.atttypid, a.atttypmod), a.attcollation, a.attnotnull, a.attidentity,
                  a.attgenerated, pg_get_expr(d.adbin, d.adrelid))
    FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    WHERE a.attrelid IN (SELECT oid FROM rel WHERE relkind NOT IN ('i', 'I')) AND a.attnum > 0 AND NOT a.attisdropped
    UNION ALL
    SELECT format('view %s %s', v.oid::regclass, pg_get_viewdef(v.oid)) FROM rel v WHERE v.relkind IN ('v', 'm')
    UNION ALL
    SELECT format('index %s', pg_get_indexdef(v.oid)) FROM rel v WHERE v.relkind IN ('i', 'I')
    UNION ALL
    SELECT format('constraint %s %s %I %s', k.conrelid::regclass, k.contypid::regtype, k.conname,
                  pg_get_constraintdef(k.oid))
    FROM pg_constraint k WHERE k.connamespace IN (SELECT oid FROM own)
    UNION ALL
    SELECT format('trigger %s', pg_get_triggerdef(g.oid)) FROM pg_trigger g
    WHERE g.tgrelid IN (SELECT oid FROM rel) AND NOT g.tgisinternal
    UNION ALL
    SELECT format('routine %s %s', p.oid::regprocedure,
                  CASE WHEN p.prokind = 'a' THEN p.prorettype::regtype::text ELSE pg_get_functiondef(p.oid) END)
    FROM pg_proc p WHERE p.pronamespace IN (SELECT oid FROM own) AND ('pg_proc'::regclass, p.oid) NOT IN (SELECT * FROM ext)
    UNION ALL
    SELECT format('type %s %s %s %s', t.oid::regtype, t.typtype, format_type(t.typbasetype, t.typtypmod),
                  (SELECT string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid))
    FROM pg_type t WHERE t.typnamespace IN (SELECT oid FROM own) AND t.typtype IN ('e', 'd', 'r', 'm')
      AND ('pg_type'::regclass, t.oid) NOT IN (SELECT * FROM ext)
    UNION ALL
    SELECT format('sequence %s %s %s %s %s %s %s %s', s.seqrelid::regclass, s.seqtypid::regtype, s.seqstart,
                  s.seqincrement, s.seqmax, s.seqmin, s.seqcache, s.seqcycle)
    FROM pg_sequence s WHERE s.seqrelid IN (SELECT oid FROM rel)
    UNION ALL
    SELECT format('policy %s %I %s %s %s %s %s', y.polrelid::regclass, y.polname, y.polcmd, y.polpermissive,
                  y.polroles, pg_get_expr(y.polqual, y.polrelid), pg_get_expr(y.polwithcheck, y.polrelid))
    FROM pg_policy y WHERE y.polrelid IN (SELECT oid FROM rel)
    UNION ALL
    SELECT format('rule %s', pg_get_ruledef(w.oid)) FROM pg_rewrite w
    WHERE w.ev_class IN (SELECT oid FROM rel) AND w.rulename <> '_RETURN'
    UNION ALL
    SELECT format('comment %s %s', o.identity, d.description)
    FROM pg_description d CROSS JOIN LATERAL pg_identify_object(d.classoid, d.objoid, d.objsubid) AS o
    WHERE d.objoid >= 16384  -- FirstNormalObjectId: not the server's own objects
      AND coalesce(o.schema, '') <> ALL ({left_alone_schemas})
      AND NOT (d.classoid = 'pg_extension'::regclass AND o.identity = ANY ({left_alone_extensions}))
    UNION ALL
    SELECT format('extension %I %s %s', x.extname, x.extversion, x.extnamespace::regnamespace) FROM pg_extension x
    WHERE x.extname <> ALL ({left_alone_extensions})
) AS definitions(line)
