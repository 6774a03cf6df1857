-- What the restore's transaction checks before COMMIT: every table's rows and checksum (the same selection
-- and expression as devops.postgres.table_stats) and every sequence, against the source's. A difference
-- raises, psql stops, and the server rolls the whole restore back. Progress goes to psql's stderr as
-- warnings. Slots filled by devops/sync/sql (load): {user_tables}, {checksum} (devops.postgres), {settings},
-- {parallel_defaults}, {parallel} (the fixed output settings and the parallel scan's, as table_stats),
-- {expected} (the source's tables and sequences, a jsonb literal).
DO $devops_verify$
DECLARE
    expected jsonb := {expected};
    found jsonb := '{}';
    sequences jsonb;
    r record;
    counted record;
    total integer;
    done integer := 0;
    defaults text[] := ARRAY[{parallel_defaults}];
BEGIN
{settings}
    SELECT count(*) INTO total FROM ({user_tables}) AS t;
    FOR r IN {user_tables} LOOP
{parallel}
        EXECUTE format('SELECT count(*) AS n, {checksum} AS checksum FROM %I.%I AS t', r.nspname, r.relname)
            INTO counted;
        found := found || jsonb_build_object(r.nspname || '.' || r.relname,
                                             jsonb_build_object('rows', counted.n, 'checksum', counted.checksum::text));
        done := done + 1;
        RAISE WARNING 'devops-verified %/%', done, total;  -- progress, read from psql's stderr
    END LOOP;
    SELECT coalesce(jsonb_object_agg(schemaname || '.' || sequencename, last_value), '{}') INTO sequences
    FROM pg_sequences;
    IF found IS DISTINCT FROM expected->'tables' OR sequences IS DISTINCT FROM expected->'sequences' THEN
        RAISE EXCEPTION 'devops-verify %', jsonb_build_object('tables', found, 'sequences', sequences)::text;
    END IF;
END
$devops_verify$;
