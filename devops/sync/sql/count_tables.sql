-- The loop that counts and checksums every user table, one EXECUTE per table inside one statement (a DO
-- block): read_tables.sql's and verify.sql's. Its block declares found jsonb ('{}'), r record, counted record,
-- total integer, done integer (0) and defaults text[] (the parallel settings' values before it).
-- Slots: {user_tables}, {checksum} (devops.postgres: the same selection and expression everywhere),
-- {parallel} (a large table's scan may use the server's parallel workers: postgres.PARALLEL_ON; or nothing),
-- {progress} (a statement after each table, or nothing).
    SELECT count(*) INTO total FROM ({user_tables}) AS t;
    FOR r IN {user_tables} LOOP
{parallel}
        EXECUTE format('SELECT count(*) AS n, {checksum} AS checksum FROM %I.%I AS t', r.nspname, r.relname)
            INTO counted;
        found := found || jsonb_build_object(r.nspname || '.' || r.relname,
                                             jsonb_build_object('rows', counted.n, 'checksum', counted.checksum::text));
        done := done + 1;
{progress}
    END LOOP;
