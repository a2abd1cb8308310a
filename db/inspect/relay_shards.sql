-- Relay shards: per shard, the relay that leads it (while its lease is live), the lease epoch that
-- fences a former leader, the cursor (xid, seq) the relay has published up to, and when it last
-- published. A shard without a lease row has never been led; a released lease expires at -infinity.
-- Served by relay_leases (one row per shard).
SELECT s.shard,
       CASE WHEN l.expires_at > now() THEN l.owner END AS leader,
       l.epoch,
       CASE WHEN isfinite(l.expires_at) THEN extract(epoch FROM l.expires_at - now())::double precision END AS lease_expires_in_seconds,
       l.cursor_xid::text AS cursor_xid,
       l.cursor_seq,
       l.published_at,
       extract(epoch FROM now() - l.published_at)::double precision AS since_publish_seconds
FROM outbox_live_shards() AS s(shard)
LEFT JOIN relay_leases l ON l.shard = s.shard
ORDER BY s.shard;
