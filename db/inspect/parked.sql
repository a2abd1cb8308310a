-- Parked rows: events the relay could not publish for a permanent reason (too large, invalid
-- topic), newest first, with the error. Redrive one with `evalbox outbox redrive <id>`.
-- Served by a scan of outbox_parked (small by design).
SELECT id, seq, topic, key, type, error_code, error_message, created_at, parked_at, redriven_at,
       octet_length(payload::text) AS payload_bytes
FROM outbox_parked
ORDER BY parked_at DESC
LIMIT $1;
