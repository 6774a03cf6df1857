-- Every user table's rows (and checksum) in one statement: a DO block leaves them, as jsonb, in the
-- transaction's setting devops.tables, and a SELECT reads it back beside the other columns the caller asks
-- for ({columns}). Sent as one query string: one round trip, one transaction (the caller's, or an implicit
-- one). Slots: {settings} (the fixed output settings), {parallel_defaults}, {count_tables}, {columns}.
DO $devops_tables$
DECLARE
    found jsonb := '{}';
    r record;
    counted record;
    total integer;
    done integer := 0;
    defaults text[] := ARRAY[{parallel_defaults}];
BEGIN
{settings}
{count_tables}
    PERFORM set_config('devops.tables', found::text, true);
END
$devops_tables$;
SELECT current_setting('devops.tables')::jsonb{columns}
