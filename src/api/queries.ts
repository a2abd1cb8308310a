// The API's reads, one question per function, each with the index that serves it. The ingest
// write (one statement: evaluation row + outbox row) lives in evaluations.ts.
import { sql } from 'kysely';
import type { Db } from '../db/index.js';
import type { EvaluationStatus } from '../db/types.js';

export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** One evaluation of an application. Index: evaluations_pkey (id); application_id is a filter. */
export async function selectEvaluation(db: Db, applicationId: string, id: string) {
  return db
    .selectFrom('evaluations')
    .select([
      'id',
      'application_id',
      'model_id',
      'prompt',
      'response',
      'context',
      'reference',
      'metadata',
      'dimensions',
      'status',
      'external_id',
      'created_at',
      'scored_at',
      'messages',
      'tags',
      'session_id',
      'user_id',
      'call_input_tokens',
      'call_output_tokens',
      'call_latency_ms',
      'call_cost_usd',
    ])
    .where('id', '=', id)
    .where('application_id', '=', applicationId)
    .executeTakeFirst();
}

/** The score rows of one evaluation, by dimension. Index: scores_pkey (evaluation_id, dimension). */
export async function selectScores(db: Db, evaluationId: string) {
  return db
    .selectFrom('scores')
    .select([
      'dimension',
      'status',
      'value',
      'label',
      'direction',
      'reasoning',
      'source',
      'scorer_name',
      'scorer_version',
      'judge_model',
      'error_code',
      'attempts',
      'input_tokens',
      'output_tokens',
      'latency_ms',
      'cost_usd',
      'cache_hit',
      'updated_at',
    ])
    .where('evaluation_id', '=', evaluationId)
    .orderBy('dimension')
    .execute();
}

/** An evaluation with its scores, or undefined when the id is malformed, unknown or another application's. */
export async function findEvaluation(db: Db, applicationId: string, id: string) {
  if (!UUID.test(id)) return undefined;
  const evaluation = await selectEvaluation(db, applicationId, id);
  if (!evaluation) return undefined;
  return { evaluation, scores: await selectScores(db, id) };
}

export interface PageQuery {
  applicationId: string;
  status?: EvaluationStatus;
  since?: Date;
  after?: { xid: string; id: string };
  limit: number;
}

/**
 * One page in (xid, id) order, only below the snapshot horizon: every transaction that could
 * still commit a row has an xid >= pg_snapshot_xmin, so a row can never appear behind a page a
 * client already read. Rows of transactions still in flight show up on a later page.
 * Index: evaluations_application_xid_idx (application_id, xid, id), or with status=
 * evaluations_application_status_xid_idx (application_id, status, xid, id).
 */
export async function listEvaluationsPage(db: Db, query: PageQuery) {
  let q = db
    .selectFrom('evaluations')
    .select(['id', 'model_id', 'dimensions', 'status', 'external_id', 'created_at', 'scored_at', sql<string>`xid::text`.as('xid_text')])
    .where('application_id', '=', query.applicationId)
    .where(sql<boolean>`xid < pg_snapshot_xmin(pg_current_snapshot())`);
  if (query.status) q = q.where('status', '=', query.status);
  if (query.since) q = q.where('created_at', '>=', query.since);
  if (query.after) q = q.where(sql<boolean>`(xid, id) > (${query.after.xid}::xid8, ${query.after.id}::uuid)`);
  const rows = await q
    .orderBy('xid')
    .orderBy('id')
    .limit(query.limit + 1)
    .execute();
  const page = rows.slice(0, query.limit);
  const last = page[page.length - 1];
  return {
    items: page.map(({ xid_text: _xid, ...row }) => row),
    // Offered whenever the page has rows, even the last one: a client keeps it to read rows
    // committed later (an empty page means it is caught up).
    next: last ? { xid: last.xid_text, id: last.id } : query.after,
    hasMore: rows.length > query.limit,
  };
}

/** How far back scoredSince may reach: the first poll reads at most this window of results. */
export const SCORED_SINCE_MAX_WINDOW_MS = 24 * 3_600_000;

export interface ScoredPageQuery {
  applicationId: string;
  status?: EvaluationStatus;
  since?: Date;
  /** Only results decided at or after this time (the first poll; later polls pass `after`). */
  scoredSince?: Date;
  after?: { xid: string; id: string };
  limit: number;
}

/**
 * One page of an application's results in the order they were decided, (scored_xid, id), only
 * below the snapshot horizon, so a result committed late is never behind a page already read.
 * An evaluation scored again (a redrive) moves to its new place. Two plans, both bounded:
 * - with a cursor: evaluations_application_scored_xid_idx (application_id, scored_xid, id) from
 *   the cursor on, at most `limit` rows plus those not yet below the horizon;
 * - the first poll (scoredSince, no cursor): evaluations_application_scored_at_idx
 *   (application_id, scored_at) over at most SCORED_SINCE_MAX_WINDOW_MS of results, then a
 *   top-N sort. OFFSET 0 keeps the window's scan planned on its own, so the planner cannot trade
 *   it for a walk of the application's whole history in scored_xid order.
 */
export async function listScoredPage(db: Db, query: ScoredPageQuery) {
  const { rows } = await scoredPageSql(query).execute(db);
  const page = rows.slice(0, query.limit);
  const last = page[page.length - 1];
  return {
    // Each item keeps its own position (the results stream names every event by it).
    items: page.map(({ xid_text, ...row }) => ({ ...row, position: { xid: xid_text, id: row.id, order: 'scored' as const } })),
    next: last ? { xid: last.xid_text, id: last.id, order: 'scored' as const } : query.after ? { ...query.after, order: 'scored' as const } : undefined,
    hasMore: rows.length > query.limit,
  };
}

/** The statement of listScoredPage (exported so a test can EXPLAIN it). */
export function scoredPageSql(query: ScoredPageQuery) {
  const filters = [
    sql`application_id = ${query.applicationId}`,
    sql`scored_xid IS NOT NULL`,
    sql`scored_xid < pg_snapshot_xmin(pg_current_snapshot())`,
    ...(query.status ? [sql`status = ${query.status}`] : []),
    ...(query.since ? [sql`created_at >= ${query.since}`] : []),
    ...(query.after ? [sql`(scored_xid, id) > (${query.after.xid}::xid8, ${query.after.id}::uuid)`] : []),
  ];
  const columns = sql`id, model_id, dimensions, status, external_id, created_at, scored_at, scored_xid::text AS xid_text, scored_xid`;
  if (query.scoredSince) filters.push(sql`scored_at >= ${query.scoredSince}`);
  const where = sql.join(filters, sql` AND `);
  const fence = query.scoredSince && !query.after ? sql`OFFSET 0` : sql``;
  const source = sql`(SELECT ${columns} FROM evaluations WHERE ${where} ${fence}) AS window_rows`;
  return sql<PageRow & { xid_text: string }>`
    SELECT id, model_id, dimensions, status, external_id, created_at, scored_at, xid_text FROM ${source}
    ORDER BY scored_xid, id LIMIT ${query.limit + 1}`;
}

interface PageRow {
  id: string;
  model_id: string | null;
  dimensions: string[];
  status: EvaluationStatus;
  external_id: string | null;
  created_at: Date;
  scored_at: Date | null;
}
