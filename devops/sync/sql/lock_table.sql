-- The server's lock table: max_locks_per_transaction, and the number of slots it is multiplied by (every
-- connection, prepared transaction and background process: PostgreSQL's MaxBackends + max_prepared_xacts;
-- 18 counts autovacuum_worker_slots where older majors count autovacuum_max_workers). Readable by any role.
SELECT current_setting('max_locks_per_transaction')::int,
       current_setting('max_connections')::int + current_setting('max_prepared_transactions')::int
       + coalesce(current_setting('autovacuum_worker_slots', true), current_setting('autovacuum_max_workers'))::int
       + 1 + current_setting('max_worker_processes')::int + current_setting('max_wal_senders')::int
