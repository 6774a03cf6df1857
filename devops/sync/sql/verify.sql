-- What the restore's transaction checks before COMMIT: every table's rows and checksum (count_tables.sql, as
-- every read of a database) and every sequence, against the source's. A difference
-- raises, psql stops, and the server rolls the whole restore back. Progress goes to psql's stderr as
-- warnings, and once it passed, the schema's hash (schema_hash.sql) for the target's record. Slots filled by
-- devops/sync/sql (load): {settings}, {parallel_defaults} (the fixed output settings and the parallel scan's,
-- as read_tables.sql), {count_tables}, {sequences} (sql.SEQUENCES, as every read), {schema_hash}, {expected}
-- (the source's tables and sequences, a jsonb literal).
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
{count_tables}
    sequences := ({sequences});
    IF found IS DISTINCT FROM expected->'tables' OR sequences IS DISTINCT FROM expected->'sequences' THEN
        RAISE EXCEPTION 'devops-verify %', jsonb_build_object('tables', found, 'sequences', sequences)::text;
    END IF;
    RAISE WARNING 'devops-schema %', ({schema_hash});  -- what the target's record says it holds
END
$devops_verify$;
