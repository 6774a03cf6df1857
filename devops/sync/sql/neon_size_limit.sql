-- Neon's ceiling for the branch, in bytes: the setting neon.max_cluster_size, which Neon's servers show with its
-- unit ("512MB"), -1 for none; NULL on a server without it (RDS, PostgreSQL). One scalar subquery.
(SELECT CASE WHEN v = '-1' THEN -1 ELSE pg_size_bytes(v) END FROM current_setting('neon.max_cluster_size', true) AS v)
