-- Oldest pending: the $1 oldest outbox events not yet published (in the relay's reading order per
-- shard), with whether each is still above the snapshot horizon (its transaction or an older
-- one is still running, so the relay may not read it yet).
-- Served by outbox_shard_xid_seq_idx (one range scan per shard).
SELECT p.id, p.shard, p.topic, p.key, p.type, p.xid::text AS xid, p.seq, p.created_at,
       extract(epoch FROM now() - p.created_at)::double precision AS age_seconds,
       p.xid >= pg_snapshot_xmin(pg_current_snapshot()) AS above_horizon
FROM outbox_live_shards() AS s(shard)
LEFT JOIN relay_leases l ON l.shard = s.shard
CROSS JOIN LATERAL (
  SELECT o.* FROM outbox o
  WHERE o.shard = s.shard
    AND (o.xid, o.seq) > (coalesce(l.cursor_xid, '0'::xid8), coalesce(l.cursor_seq, 0))
  ORDER BY o.xid, o.seq
  LIMIT $1
) p
ORDER BY p.created_at
LIMIT $1;
