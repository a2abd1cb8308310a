-- Stage counts: per minute over the last $1 minutes, how many evaluations were accepted, how many
-- evaluation.created events were published to Kafka, how many evaluations were scored (the
-- scorer writes its evaluation.scored outbox row in the transaction that records the scores), how
-- many of those results were published, and how many outbox rows were parked.
-- Accepted is counted by the evaluations' time-ordered ids (uuid v7: the first 48 bits are Unix
-- milliseconds), so the primary key serves it; the outbox counts are served by partitions pruned on
-- created_at, then the per-shard cursor comparison (as throughput.sql); parked rows are few.
WITH bounds AS (
  SELECT since,
         (substr(ms, 1, 8) || '-' || substr(ms, 9, 4) || '-0000-0000-000000000000')::uuid AS lowest_id
  FROM (SELECT date_trunc('minute', now()) - make_interval(mins => $1::int - 1) AS since) w
  CROSS JOIN LATERAL (SELECT lpad(to_hex((extract(epoch FROM w.since) * 1000)::bigint), 12, '0') AS ms) m
)
SELECT date_trunc('minute', e.created_at) AS minute, 'accepted' AS stage, count(*)::bigint AS count
FROM evaluations e, bounds b
WHERE e.id >= b.lowest_id AND e.created_at >= b.since
GROUP BY 1
UNION ALL
SELECT date_trunc('minute', o.created_at), s.stage, count(*)::bigint
FROM outbox o
CROSS JOIN bounds b
LEFT JOIN relay_leases l ON l.shard = o.shard
CROSS JOIN LATERAL (
  SELECT CASE
           WHEN o.type = 'evaluation.created' THEN 'published'
           ELSE 'result_published'
         END AS stage
  WHERE l.shard IS NOT NULL AND (o.xid, o.seq) <= (l.cursor_xid, l.cursor_seq)
  UNION ALL
  SELECT 'scored' WHERE o.type = 'evaluation.scored'
) s
WHERE o.created_at >= b.since
GROUP BY 1, 2
UNION ALL
SELECT date_trunc('minute', p.parked_at), 'parked', count(*)::bigint
FROM outbox_parked p, bounds b
WHERE p.parked_at >= b.since
GROUP BY 1
ORDER BY 1, 2;
