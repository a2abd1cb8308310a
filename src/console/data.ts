// The console's database reads: evaluations (list and detail, scoped to one application for an
// application key), the quality aggregates, and the pipeline questions of db/inspect/*.sql.
// Every time window is expressed as a lower bound on the evaluations' time-ordered ids (uuid v7),
// so the primary key serves it instead of a scan by created_at.
import { sql } from 'kysely';
import type { Db } from '../db/index.js';
import type { EvaluationStatus, ScoreStatus } from '../db/types.js';
import { runInspection, type BacklogRow } from '../inspect.js';

export const STATUSES: EvaluationStatus[] = ['PENDING', 'SCORED', 'PARTIALLY_SCORED', 'SCORING_FAILED'];
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export const isUuid = (text: string): boolean => UUID.test(text);

/** The smallest uuid v7 made at or after `ms` (its first 48 bits are the Unix milliseconds). */
export function lowestIdAt(ms: number): string {
  const hex = Math.max(0, Math.floor(ms)).toString(16).padStart(12, '0').slice(-12);
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-0000-0000-000000000000`;
}

export interface EvaluationFilter {
  /** Set for an application key (forced) or chosen by an operator. */
  applicationId?: string;
  status?: EvaluationStatus;
  dimension?: string;
  model?: string;
  /** Only evaluations created at or after this time. */
  since?: Date;
  /** Keyset cursor: the last id of the previous page (the list runs newest first). */
  before?: string;
  limit: number;
}

export interface ScoreChip {
  dimension: string;
  status: ScoreStatus;
  value: number | null;
  label: string | null;
  direction: string | null;
}

export interface EvaluationListItem {
  id: string;
  application_id: string;
  model_id: string | null;
  status: EvaluationStatus;
  dimensions: string[];
  created_at: Date;
  scored_at: Date | null;
  scores: ScoreChip[];
}

export async function listEvaluations(db: Db, filter: EvaluationFilter): Promise<{ items: EvaluationListItem[]; next: string | undefined }> {
  let query = db
    .selectFrom('evaluations')
    .select(['id', 'application_id', 'model_id', 'status', 'dimensions', 'created_at', 'scored_at'])
    .orderBy('id', 'desc')
    .limit(filter.limit + 1);
  if (filter.applicationId !== undefined) query = query.where('application_id', '=', filter.applicationId);
  if (filter.status) query = query.where('status', '=', filter.status);
  if (filter.model) query = query.where('model_id', '=', filter.model);
  if (filter.dimension) query = query.where(sql<boolean>`dimensions @> ARRAY[${filter.dimension}]::text[]`);
  if (filter.since) query = query.where('id', '>=', lowestIdAt(filter.since.getTime()));
  if (filter.before && isUuid(filter.before)) query = query.where('id', '<', filter.before);
  const rows = await query.execute();
  const page = rows.slice(0, filter.limit);
  const scores =
    page.length === 0
      ? []
      : await db
          .selectFrom('scores')
          .select(['evaluation_id', 'dimension', 'status', 'value', 'label', 'direction'])
          .where(
            'evaluation_id',
            'in',
            page.map((r) => r.id),
          )
          .orderBy('dimension')
          .execute();
  const byEvaluation = new Map<string, ScoreChip[]>();
  for (const s of scores) {
    const list = byEvaluation.get(s.evaluation_id) ?? [];
    list.push({ dimension: s.dimension, status: s.status, value: s.value, label: s.label, direction: s.direction });
    byEvaluation.set(s.evaluation_id, list);
  }
  return {
    items: page.map((r) => ({ ...r, scores: byEvaluation.get(r.id) ?? [] })),
    next: rows.length > filter.limit ? page[page.length - 1]?.id : undefined,
  };
}

export interface OutboxTrace {
  id: string;
  type: string;
  topic: string;
  xid: string;
  seq: string;
  shard: number;
  created_at: Date;
  headers: Record<string, string>;
  state: 'published' | 'pending' | 'parked';
  /** When the shard's cursor last moved (an upper bound of the publish time of a published row). */
  shard_published_at: Date | null;
  parked_reason: string | null;
}

/** One evaluation with its scores and outbox events, or undefined when the viewer may not see it. */
export async function findEvaluationDetail(db: Db, id: string, applicationId: string | undefined) {
  if (!isUuid(id)) return undefined;
  let query = db.selectFrom('evaluations').selectAll().where('id', '=', id);
  if (applicationId !== undefined) query = query.where('application_id', '=', applicationId);
  const evaluation = await query.executeTakeFirst();
  if (!evaluation) return undefined;
  const scores = await db.selectFrom('scores').selectAll().where('evaluation_id', '=', id).orderBy('dimension').execute();
  // The events of this evaluation: the key is the application id, and they were written at or
  // after the evaluation (outbox_key_idx serves key + created_at).
  const { rows: events } = await sql<OutboxTrace>`
    SELECT o.id, o.type, o.topic, o.xid::text AS xid, o.seq, o.shard, o.created_at, o.headers,
           CASE
             WHEN pk.seq IS NOT NULL AND pk.redriven_at IS NULL THEN 'parked'
             WHEN l.shard IS NOT NULL AND (o.xid, o.seq) <= (l.cursor_xid, l.cursor_seq) THEN 'published'
             ELSE 'pending'
           END AS state,
           l.published_at AS shard_published_at,
           pk.error_message AS parked_reason
    FROM outbox o
    LEFT JOIN relay_leases l ON l.shard = o.shard
    LEFT JOIN outbox_parked pk ON pk.seq = o.seq
    WHERE o.key = ${evaluation.application_id}
      AND o.created_at >= ${evaluation.created_at}::timestamptz - interval '1 minute'
      AND o.payload ->> 'evaluationId' = ${id}
    ORDER BY o.xid, o.seq`.execute(db);
  return { evaluation, scores, events };
}

export type EvaluationDetail = NonNullable<Awaited<ReturnType<typeof findEvaluationDetail>>>;

/** Distinct values for the list's filter menus (bounded reads). */
export async function filterChoices(db: Db, applicationId: string | undefined) {
  const [applications, models, dimensions] = await Promise.all([
    applicationId !== undefined
      ? Promise.resolve([applicationId])
      : db
          .selectFrom('api_keys')
          .select('application_id')
          .distinct()
          .orderBy('application_id')
          .execute()
          .then((rows) => rows.map((r) => r.application_id)),
    sql<{ model_id: string }>`
      SELECT DISTINCT model_id FROM (
        SELECT model_id FROM evaluations WHERE ${applicationId === undefined} OR application_id = ${applicationId ?? null}
        ORDER BY id DESC LIMIT 2000
      ) recent WHERE model_id IS NOT NULL ORDER BY 1`
      .execute(db)
      .then((r) => r.rows.map((row) => row.model_id)),
    db
      .selectFrom('dimensions')
      .select('id')
      .orderBy('id')
      .execute()
      .then((rows) => rows.map((r) => r.id)),
  ]);
  return { applications, models, dimensions };
}

export interface QualityQuery {
  applicationId?: string;
  since: Date;
  /** Width of a time bucket of the failure-rate series. */
  bucket: 'hour' | 'day';
}

export interface QualityData {
  dimensions: string[];
  /** The window (epoch seconds), for the charts' time axes. */
  range: [number, number];
  /** dimension -> ten counts of COMPLETED values in [0,0.1), [0.1,0.2) ... [0.9,1]. */
  distribution: Map<string, number[]>;
  /** Bucket start times (epoch seconds), and per dimension the failure rate per bucket (null = no scores). */
  times: number[];
  failureRate: Map<string, (number | null)[]>;
  totals: Map<string, { scored: number; failed: number; skipped: number; mean: number | null }>;
  cost: { day: Date; model: string; costUsd: number; inputTokens: number; outputTokens: number; calls: number; cacheHits: number }[];
}

export async function qualityData(db: Db, query: QualityQuery): Promise<QualityData> {
  const lowest = lowestIdAt(query.since.getTime());
  const app = query.applicationId ?? null;
  const scope = sql`e.id >= ${lowest}::uuid AND (${app}::text IS NULL OR e.application_id = ${app})`;
  const [distributionRows, seriesRows, costRows] = await Promise.all([
    sql<{ dimension: string; bin: number; n: string }>`
      SELECT s.dimension, least(width_bucket(s.value, 0, 1, 10), 10) AS bin, count(*) AS n
      FROM evaluations e JOIN scores s ON s.evaluation_id = e.id
      WHERE ${scope} AND s.status = 'COMPLETED' AND s.value IS NOT NULL
      GROUP BY 1, 2`.execute(db),
    sql<{ t: Date; dimension: string; total: string; failed: string; skipped: string; value_sum: number | null; value_n: string }>`
      SELECT date_trunc(${query.bucket}, e.created_at) AS t, s.dimension, count(*) AS total,
             count(*) FILTER (WHERE s.status = 'ERROR') AS failed,
             count(*) FILTER (WHERE s.status = 'SKIPPED') AS skipped,
             sum(s.value) FILTER (WHERE s.status = 'COMPLETED') AS value_sum,
             count(s.value) FILTER (WHERE s.status = 'COMPLETED') AS value_n
      FROM evaluations e JOIN scores s ON s.evaluation_id = e.id
      WHERE ${scope}
      GROUP BY 1, 2 ORDER BY 1`.execute(db),
    sql<{ day: Date; model: string; cost: string | null; input_tokens: string | null; output_tokens: string | null; calls: string; cache_hits: string }>`
      SELECT date_trunc('day', s.updated_at) AS day, s.judge_model AS model, sum(s.cost_usd) AS cost,
             sum(s.input_tokens) AS input_tokens, sum(s.output_tokens) AS output_tokens,
             count(*) AS calls, count(*) FILTER (WHERE s.cache_hit) AS cache_hits
      FROM evaluations e JOIN scores s ON s.evaluation_id = e.id
      WHERE ${scope} AND s.judge_model IS NOT NULL
      GROUP BY 1, 2 ORDER BY 1, 2`.execute(db),
  ]);
  const dimensions = [...new Set(seriesRows.rows.map((r) => r.dimension))].sort();
  const distribution = new Map(dimensions.map((d) => [d, new Array<number>(10).fill(0)]));
  for (const row of distributionRows.rows) {
    const bins = distribution.get(row.dimension);
    if (bins && row.bin >= 1) bins[row.bin - 1] = Number(row.n);
  }
  const times = [...new Set(seriesRows.rows.map((r) => r.t.getTime() / 1000))].sort((a, b) => a - b);
  const failureRate = new Map(dimensions.map((d) => [d, times.map((): number | null => null)]));
  const totals = new Map(dimensions.map((d) => [d, { scored: 0, failed: 0, skipped: 0, mean: null as number | null, sum: 0, n: 0 }]));
  for (const row of seriesRows.rows) {
    const index = times.indexOf(row.t.getTime() / 1000);
    const total = Number(row.total);
    const series = failureRate.get(row.dimension);
    if (series) series[index] = total > 0 ? Number(row.failed) / total : null;
    const t = totals.get(row.dimension);
    if (t) {
      t.scored += total;
      t.failed += Number(row.failed);
      t.skipped += Number(row.skipped);
      t.sum += Number(row.value_sum ?? 0);
      t.n += Number(row.value_n);
    }
  }
  const bucketSeconds = query.bucket === 'hour' ? 3600 : 86400;
  return {
    dimensions,
    range: [Math.floor(query.since.getTime() / 1000 / bucketSeconds) * bucketSeconds, Math.ceil(Date.now() / 1000 / bucketSeconds) * bucketSeconds],
    distribution,
    times,
    failureRate,
    totals: new Map([...totals].map(([d, t]) => [d, { scored: t.scored, failed: t.failed, skipped: t.skipped, mean: t.n > 0 ? t.sum / t.n : null }])),
    cost: costRows.rows.map((r) => ({
      day: r.day,
      model: r.model,
      costUsd: Number(r.cost ?? 0),
      inputTokens: Number(r.input_tokens ?? 0),
      outputTokens: Number(r.output_tokens ?? 0),
      calls: Number(r.calls),
      cacheHits: Number(r.cache_hits),
    })),
  };
}

export interface StageCountRow {
  minute: Date;
  stage: 'accepted' | 'published' | 'scored' | 'result_published' | 'parked';
  count: string;
}

export interface RelayShardRow {
  shard: number;
  leader: string | null;
  epoch: string | null;
  lease_expires_in_seconds: number | null;
  cursor_xid: string | null;
  cursor_seq: string | null;
  published_at: Date | null;
  since_publish_seconds: number | null;
}

export interface ParkedRow {
  id: string;
  seq: string;
  topic: string;
  key: string;
  type: string;
  error_code: string;
  error_message: string;
  created_at: Date;
  parked_at: Date;
  redriven_at: Date | null;
  payload_bytes: number;
}

export interface HorizonBlockerRow {
  pid: number;
  age_seconds: number;
  state: string;
  query: string;
  xid: string;
  application_name: string;
}

export const stageCounts = (db: Db, minutes: number) => runInspection<StageCountRow>(db, 'stage_counts', [minutes]);
export const outboxBacklog = (db: Db) => runInspection<BacklogRow>(db, 'backlog');
export const relayShards = (db: Db) => runInspection<RelayShardRow>(db, 'relay_shards');
export const parkedRows = (db: Db, limit: number) => runInspection<ParkedRow>(db, 'parked', [limit]);
export const horizonBlocker = async (db: Db) => (await runInspection<HorizonBlockerRow>(db, 'horizon_blocker'))[0];

/** The application and status of the evaluations whose ids are given (for dead letters' context). */
export async function evaluationStatuses(db: Db, ids: string[]): Promise<Map<string, { application_id: string; status: EvaluationStatus }>> {
  const valid = ids.filter(isUuid);
  if (valid.length === 0) return new Map();
  const rows = await db.selectFrom('evaluations').select(['id', 'application_id', 'status']).where('id', 'in', valid).execute();
  return new Map(rows.map((r) => [r.id, { application_id: r.application_id, status: r.status }]));
}
