-- Backlog: how many outbox events are not yet published, and how old the oldest one is, per topic.
-- Pending = (xid, seq) past its shard's cursor (a shard without a lease row has published nothing).
-- Shards: the current generation's and every earlier one not yet drained (outbox_live_shards).
-- Served by outbox_shard_xid_seq_idx: one index range scan per shard, over pending rows only.
SELECT p.topic,
       sum(p.pending)::bigint AS pending,
       max(p.oldest_age_seconds)::double precision AS oldest_age_seconds,
       min(p.oldest_created_at) AS oldest_created_at
FROM outbox_live_shards() AS s(shard)
LEFT JOIN relay_leases l ON l.shard = s.shard
CROSS JOIN LATERAL (
  SELECT o.topic, count(*) AS pending, min(o.created_at) AS oldest_created_at,
         extract(epoch FROM now() - min(o.created_at)) AS oldest_age_seconds
  FROM outbox o
  WHERE o.shard = s.shard
    AND (o.xid, o.seq) > (coalesce(l.cursor_xid, '0'::xid8), coalesce(l.cursor_seq, 0))
  GROUP BY o.topic
) p
GROUP BY p.topic
ORDER BY p.topic;
