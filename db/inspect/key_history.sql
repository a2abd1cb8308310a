-- One key's history: its outbox events in the relay's order (xid, seq) with their state:
-- published (behind the shard cursor), parked (could not be published), or pending.
-- Served by outbox_key_idx.
SELECT o.id, o.topic, o.type, o.xid::text AS xid, o.seq, o.shard, o.created_at,
       CASE
         WHEN pk.seq IS NOT NULL THEN 'parked'
         WHEN l.shard IS NOT NULL AND (o.xid, o.seq) <= (l.cursor_xid, l.cursor_seq) THEN 'published'
         ELSE 'pending'
       END AS state
FROM outbox o
LEFT JOIN relay_leases l ON l.shard = o.shard
LEFT JOIN outbox_parked pk ON pk.seq = o.seq
WHERE o.key = $1
ORDER BY o.xid, o.seq
LIMIT $2;
