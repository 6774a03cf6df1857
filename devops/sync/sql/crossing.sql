-- What depends across the boundary of what the sync leaves alone (devops/sync/scope.py), in pg_describe_object's
-- words ("dependent -> what it depends on"; a view for its rule, a table for its columns and indexes), as a
-- jsonb array of two arrays: objects of the database's own that depend on one left alone (a foreign key to a
-- table of neon_auth, a view over one, a column of a left-alone extension's type), which a restore of this
-- database could not create where that is missing; and objects left alone that depend on one of the
-- database's own, which a replace of this database would drop with it (DROP ... CASCADE). Run only when
-- something is left alone. Slots: {own_schemas}, {left_alone_schemas}, {left_alone_extensions}.
WITH located(classid, objid, nsp) AS (  -- each object a user created, with its schema
    SELECT 'pg_class'::regclass, oid, relnamespace FROM pg_class WHERE oid >= 16384
    UNION ALL SELECT 'pg_type'::regclass, oid, typnamespace FROM pg_type WHERE oid >= 16384
    UNION ALL SELECT 'pg_proc'::regclass, oid, pronamespace FROM pg_proc WHERE oid >= 16384
    UNION ALL SELECT 'pg_constraint'::regclass, oid, connamespace FROM pg_constraint WHERE oid >= 16384
    UNION ALL SELECT 'pg_namespace'::regclass, oid, oid FROM pg_namespace WHERE oid >= 16384
    UNION ALL SELECT 'pg_rewrite'::regclass, r.oid, c.relnamespace
              FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class WHERE r.oid >= 16384
    UNION ALL SELECT 'pg_trigger'::regclass, t.oid, c.relnamespace
              FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid WHERE t.oid >= 16384
    UNION ALL SELECT 'pg_attrdef'::regclass, a.oid, c.relnamespace
              FROM pg_attrdef a JOIN pg_class c ON c.oid = a.adrelid
    UNION ALL SELECT 'pg_policy'::regclass, p.oid, c.relnamespace
              FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid
),
members AS (SELECT classid, objid, refobjid FROM pg_depend WHERE deptype = 'e'),
alone(classid, objid) AS (  -- what the sync leaves alone: the schemas and what is in them, the extensions and theirs
    SELECT l.classid, l.objid FROM located l JOIN pg_namespace n ON n.oid = l.nsp
    WHERE n.nspname = ANY ({left_alone_schemas})
    UNION SELECT 'pg_extension'::regclass, x.oid FROM pg_extension x WHERE x.extname = ANY ({left_alone_extensions})
    UNION SELECT m.classid, m.objid FROM members m JOIN pg_extension x ON x.oid = m.refobjid
    WHERE x.extname = ANY ({left_alone_extensions})
),
own(classid, objid) AS (  -- what the sync copies: in the database's own schemas, not an extension's
    SELECT l.classid, l.objid FROM located l JOIN pg_namespace n ON n.oid = l.nsp
    WHERE {own_schemas} AND (l.classid, l.objid) NOT IN (SELECT classid, objid FROM members)
),
crossing(own_depends, text) AS (
    SELECT (d.classid, d.objid) IN (SELECT * FROM own),
           format('%s -> %s',
                  CASE WHEN d.classid = 'pg_rewrite'::regclass  -- a view's rule: the view
                       THEN pg_describe_object('pg_class'::regclass,
                                               (SELECT ev_class FROM pg_rewrite WHERE oid = d.objid), 0)
                       ELSE pg_describe_object(d.classid, d.objid, 0) END,
                  pg_describe_object(d.refclassid, d.refobjid, 0))
    FROM pg_depend d
    WHERE d.deptype IN ('n', 'a')
      -- an index referenced (a foreign key's) goes with its table, which is named
      AND NOT (d.refclassid = 'pg_class'::regclass
               AND (SELECT relkind FROM pg_class WHERE oid = d.refobjid) IN ('i', 'I'))
      AND (((d.classid, d.objid) IN (SELECT * FROM own) AND (d.refclassid, d.refobjid) IN (SELECT * FROM alone))
           OR ((d.classid, d.objid) IN (SELECT * FROM alone) AND (d.refclassid, d.refobjid) IN (SELECT * FROM own)))
)
SELECT jsonb_build_array(
    (SELECT coalesce(jsonb_agg(DISTINCT text), '[]') FROM crossing WHERE own_depends),
    (SELECT coalesce(jsonb_agg(DISTINCT text), '[]') FROM crossing WHERE NOT own_depends))
