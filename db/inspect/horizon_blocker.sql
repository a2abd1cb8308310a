-- Horizon blocker: the backend whose open transaction holds the snapshot horizon
-- (pg_snapshot_xmin) back, so the relay cannot read outbox rows committed after it started.
-- It is the backend with the oldest assigned transaction id. Prepared transactions
-- (pg_prepared_xacts) can hold the horizon too and are not listed here.
SELECT pid,
       extract(epoch FROM now() - xact_start)::double precision AS age_seconds,
       state,
       left(query, 200) AS query,
       backend_xid::text AS xid,
       application_name
FROM pg_stat_activity
WHERE pid <> pg_backend_pid()
  AND backend_xid IS NOT NULL
ORDER BY age(backend_xid) DESC
LIMIT 1;
