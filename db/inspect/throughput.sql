-- Publish throughput: events published per minute over the last $1 minutes, per topic.
-- Counts rows that are behind their shard's cursor (published) by the minute they were
-- written; with a healthy relay that is within milliseconds of when they were published, so it
-- reads as publish throughput. It is exact about what was published, approximate about when.
-- Served by outbox partitions pruned on created_at, then the per-shard cursor comparison.
SELECT date_trunc('minute', o.created_at) AS minute, o.topic, count(*)::bigint AS published
FROM outbox o
JOIN relay_leases l ON l.shard = o.shard
WHERE o.created_at >= now() - make_interval(mins => $1::int)
  AND (o.xid, o.seq) <= (l.cursor_xid, l.cursor_seq)
GROUP BY 1, 2
ORDER BY 1, 2;
