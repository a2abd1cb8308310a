// The scorer's database work, batched across concurrent evaluations: reads are coalesced per
// tick (one query for many evaluations), and the final writes of many evaluations share one
// transaction (one commit, one fsync). Each batch locks its evaluation rows in id order before
// any write, so xid order is commit order for every evaluation's events and concurrent batches
// cannot deadlock. A batch that fails for a permanent reason is retried item by item, so one
// bad evaluation fails alone (its caller gets the PermanentError) and the others go through.
// Errors reach callers classified by SQLSTATE: RetryableError or PermanentError.
import { sql, type Selectable, type Transaction } from 'kysely';
import type { Topics } from '../src/config.js';
import type { Database, Db } from '../src/db/index.js';
import type { EvaluationStatus, ScoresTable } from '../src/db/types.js';
import { PUBLISHED_STALE_AFTER_MS } from '../src/dimensions.js';
import { classifyPgError } from '../src/errors.js';
import { upsertScores } from '../src/db/scores.js';
import { EVENT_TYPES, insertOutboxEvents } from '../src/events.js';
import { createOutboxNudger, type OutboxNudger } from '../src/outbox-wakeup.js';
import { toScoreRecord, type ScoreRecord } from './score-rows.js';
import { evaluationStatus, REPLACES_STORED_SQL } from './terminal-status.js';
import { EVENT_SCHEMA_VERSION, isTerminalScore, toScoreResult, type EvaluationScoredData, type ScoreResult } from '../src/schemas/events.js';

export interface ScoreRowValues {
  dimension: string;
  status: 'COMPLETED' | 'SKIPPED' | 'ERROR';
  value: number | null;
  label: string | null;
  raw_value: number | null;
  direction: 'higher_is_better' | 'lower_is_better' | null;
  reasoning: string | null;
  source: 'HEURISTIC' | 'LLM_JUDGE';
  scorer_name: string;
  scorer_version: string;
  error_code: string | null;
  judge_model?: string | null;
  prompt_hash?: string | null;
  input_tokens?: number | null;
  output_tokens?: number | null;
  latency_ms?: number | null;
  cost_usd?: number | null;
  cache_hit?: boolean;
}

export interface LoadedEvaluation {
  evaluation: {
    id: string;
    application_id: string;
    prompt: string;
    response: string;
    context: unknown;
    reference: string | null;
    metadata: unknown;
    dimensions: string[];
    status: EvaluationStatus;
  };
  scores: Map<string, Selectable<ScoresTable>>;
}

export interface CommitItem {
  evaluationId: string;
  applicationId: string;
  rows: { row: ScoreRowValues; attempts: number }[];
  /** A DLT redrive may re-decide a terminal evaluation's status. */
  redriven: boolean;
  /** The redrive's id: applied at most once, recorded in the same transaction. */
  redriveId?: string;
  /** The scoring span's context: the evaluation.scored event carries it. */
  traceparent?: string | undefined;
}

export interface ScoreStore {
  load(evaluationId: string): Promise<LoadedEvaluation | undefined>;
  /** Resolves with the new terminal status once committed, or undefined when nothing changed. */
  commit(item: CommitItem): Promise<EvaluationStatus | undefined>;
  /** Whether the redrive `redriveId` was applied already. */
  redriveApplied(redriveId: string): Promise<boolean>;
  /** Whether the evaluation was deleted through the API (a tombstone exists), rather than never written. */
  wasDeleted?(evaluationId: string): Promise<boolean>;
  /** Which of these dimensions a running scorer still offers (re-published within the stale bound). */
  offeredByLiveScorers(dimensions: string[]): Promise<string[]>;
}

interface Waiter<I, O> {
  item: I;
  resolve(value: O): void;
  reject(error: unknown): void;
}

/** One item's result in a batch: its value, or the error that is its own. */
export type Settled<O> = { value: O } | { error: unknown };

/**
 * Collects calls made in the same tick (and while a batch runs) into batches of at most `max`.
 * `run` settles each item on its own, so one item's failure rejects only its caller.
 */
function batcher<I, O>(run: (items: I[]) => Promise<Settled<O>[]>, options: { max: number; concurrency: number }) {
  const queue: Waiter<I, O>[] = [];
  let running = 0;
  let scheduled = false;
  const pump = () => {
    scheduled = false;
    while (running < options.concurrency && queue.length > 0) {
      const batch = queue.splice(0, options.max);
      running++;
      run(batch.map((w) => w.item))
        .then((results) =>
          batch.forEach((w, i) => {
            const result = results[i] as Settled<O>;
            if ('error' in result) w.reject(result.error);
            else w.resolve(result.value);
          }),
        )
        .catch((error) => batch.forEach((w) => w.reject(error)))
        .finally(() => {
          running--;
          schedule();
        });
    }
  };
  const schedule = () => {
    if (!scheduled && queue.length > 0) {
      scheduled = true;
      setImmediate(pump);
    }
  };
  return (item: I) =>
    new Promise<O>((resolve, reject) => {
      queue.push({ item, resolve, reject });
      schedule();
    });
}

/**
 * Runs `work` on the whole batch; when it fails for a reason retrying cannot fix (a value
 * Postgres rejects), runs it item by item so the culprit fails alone and the others go through.
 * Every error comes out classified (RetryableError or PermanentError).
 */
export async function withItemFallback<I, O>(items: I[], work: (items: I[]) => Promise<O[]>): Promise<Settled<O>[]> {
  try {
    return (await work(items)).map((value) => ({ value }));
  } catch (thrown) {
    const error = classifyPgError(thrown);
    if (items.length === 1 || error.retryable) return items.map(() => ({ error }));
  }
  const results: Settled<O>[] = [];
  for (const item of items) {
    try {
      results.push({ value: (await work([item]))[0] as O });
    } catch (thrown) {
      results.push({ error: classifyPgError(thrown) });
    }
  }
  return results;
}

export function createScoreStore(db: Db, topics: Topics, options: { maxBatch?: number; concurrency?: number; nudger?: OutboxNudger } = {}): ScoreStore {
  const max = options.maxBatch ?? 100;
  // Wakes the relay once a batch's evaluation.scored events are committed (never inside the transaction).
  const nudger = options.nudger ?? createOutboxNudger(db);
  const concurrency = options.concurrency ?? 2;

  const loadBatch = async (ids: string[]): Promise<(LoadedEvaluation | undefined)[]> => {
    const evaluations = await db
      .selectFrom('evaluations')
      .select(['id', 'application_id', 'prompt', 'response', 'context', 'reference', 'metadata', 'dimensions', 'status'])
      .where('id', 'in', ids)
      .execute();
    const scores = await scoresOf(db, ids);
    return ids.map((id) => {
      const evaluation = evaluations.find((e) => e.id === id);
      if (!evaluation) return undefined;
      return { evaluation, scores: new Map(scores.filter((s) => s.evaluation_id === id).map((s) => [s.dimension, s])) };
    });
  };
  const load = batcher<string, LoadedEvaluation | undefined>((ids) => withItemFallback(ids, loadBatch), { max, concurrency });

  const commitBatch = async (items: CommitItem[]) => {
    try {
      return await db.transaction().execute((trx) => writeBatch(trx, topics, items));
    } finally {
      nudger.nudge();
    }
  };
  const commit = batcher<CommitItem, EvaluationStatus | undefined>((items) => withItemFallback(items, commitBatch), { max, concurrency });

  const redriveApplied = async (redriveId: string) =>
    (await sql`SELECT 1 FROM evaluation_redrives WHERE redrive_id = ${redriveId}`.execute(db)).rows.length > 0;

  const wasDeleted = async (evaluationId: string) =>
    (await sql`SELECT 1 FROM evaluation_deletions WHERE evaluation_id = ${evaluationId}`.execute(db)).rows.length > 0;

  const offeredByLiveScorers = async (dimensions: string[]) =>
    (
      await sql<{ id: string }>`
        SELECT id FROM dimensions
        WHERE id = ANY(${dimensions}::text[]) AND updated_at > now() - make_interval(secs => ${PUBLISHED_STALE_AFTER_MS / 1000})`.execute(db)
    ).rows.map((r) => r.id);

  return { load, commit, redriveApplied, wasDeleted, offeredByLiveScorers };
}

/**
 * The score rows of these evaluations, one index probe per evaluation. As `evaluation_id IN
 * (…)` the planner needs statistics to see that 100 ids are a few hundred rows; before scores is
 * first analyzed (a new deployment, its first minute) it scans the whole table instead, for every
 * batch. OFFSET 0 keeps the lateral subquery from being flattened into a join that could make
 * the same choice, so the plan is a nested loop over scores_pkey whatever the statistics say.
 */
async function scoresOf(executor: Db | Transaction<Database>, ids: string[]): Promise<Selectable<ScoresTable>[]> {
  const { rows } = await sql<Selectable<ScoresTable>>`
    SELECT s.* FROM unnest(${ids}::uuid[]) AS u(id)
    CROSS JOIN LATERAL (SELECT * FROM scores WHERE evaluation_id = u.id OFFSET 0) s`.execute(executor);
  return rows;
}

async function writeBatch(trx: Transaction<Database>, topics: Topics, items: CommitItem[]): Promise<(EvaluationStatus | undefined)[]> {
  const ids = [...new Set(items.map((i) => i.evaluationId))].sort();
  // Lock first, in id order: before any write takes an xid, and deadlock-free across batches.
  const locked = await trx.selectFrom('evaluations').select(['id', 'status', 'dimensions']).where('id', 'in', ids).orderBy('id').forUpdate().execute();
  const byId = new Map(locked.map((e) => [e.id, e]));

  // Re-checked under the lock: an evaluation that is terminal already was finalised by another
  // delivery of its event (a redelivery, or the other member of a rebalance that scored it at the
  // same time). Its rows, status and published event agree; this item changes none of them.
  // Only a redrive may re-decide a terminal evaluation.
  let writable = items.filter((i) => {
    const e = byId.get(i.evaluationId);
    return e !== undefined && (e.status === 'PENDING' || i.redriven);
  });
  // A redrive is applied once: a second delivery of it (or a concurrent one) writes nothing.
  const redriveIds = writable.flatMap((i) => (i.redriveId ? [i.redriveId] : []));
  if (redriveIds.length > 0) {
    const { rows: fresh } = await sql<{ redrive_id: string }>`
      INSERT INTO evaluation_redrives (redrive_id, evaluation_id)
      SELECT * FROM unnest(${redriveIds}::text[], ${writable.filter((i) => i.redriveId).map((i) => i.evaluationId)}::uuid[])
      ON CONFLICT (redrive_id) DO NOTHING
      RETURNING redrive_id`.execute(trx);
    const applied = new Set(fresh.map((r) => r.redrive_id));
    writable = writable.filter((i) => !i.redriveId || applied.has(i.redriveId));
  }
  // What a redriven (terminal) evaluation looked like before: unchanged means nothing to announce.
  const redrivenIds = writable.filter((i) => byId.get(i.evaluationId)?.status !== 'PENDING').map((i) => i.evaluationId);
  const before = redrivenIds.length > 0 ? await scoresOf(trx, redrivenIds) : [];

  // One row per (evaluation, dimension): the last item of the batch wins.
  const rows = new Map<string, ScoreRecord>();
  for (const item of writable)
    for (const { row, attempts } of item.rows) rows.set(`${item.evaluationId}|${row.dimension}`, toScoreRecord(item.evaluationId, row, attempts));
  if (rows.size > 0) {
    // A result that is COMPLETED with the same scorer version never changes, and a COMPLETED
    // result is never replaced by an ERROR.
    await upsertScores(trx, [...rows.values()], REPLACES_STORED_SQL).execute();
  }

  const finalising = writable;
  const finalIds = [...new Set(finalising.map((i) => i.evaluationId))];
  const results = new Map<string, EvaluationStatus>();
  if (finalIds.length > 0) {
    const all = await scoresOf(trx, finalIds);
    const scoredAt = new Date();
    const events = [];
    for (const id of finalIds) {
      const evaluation = byId.get(id) as (typeof locked)[number];
      const own = all.filter((s) => s.evaluation_id === id && evaluation.dimensions.includes(s.dimension));
      const status = evaluationStatus(evaluation.dimensions, own);
      if (status === undefined) continue;
      if (
        evaluation.status !== 'PENDING' &&
        evaluation.status === status &&
        sameResults(
          before.filter((s) => s.evaluation_id === id && evaluation.dimensions.includes(s.dimension)),
          own,
        )
      )
        continue;
      results.set(id, status);
      const { applicationId, traceparent } = finalising.find((i) => i.evaluationId === id) as CommitItem;
      const scores: ScoreResult[] = own.map(toScoreResult).filter(isTerminalScore); // none is PENDING here (checked above)
      const data: EvaluationScoredData = {
        schemaVersion: EVENT_SCHEMA_VERSION,
        evaluationId: id,
        applicationId,
        status,
        scores,
        scoredAt: scoredAt.toISOString(),
      };
      events.push({
        topic: topics.scores,
        key: applicationId,
        type: EVENT_TYPES.evaluationScored,
        source: '/evalbox/scorer',
        data,
        ...(traceparent ? { headers: { traceparent } } : {}),
      });
    }
    if (results.size > 0) {
      await sql`
        UPDATE evaluations e SET status = u.status, scored_at = ${scoredAt}
        FROM unnest(${[...results.keys()]}::uuid[], ${[...results.values()]}::text[]) AS u(id, status)
        WHERE e.id = u.id`.execute(trx);
      await insertOutboxEvents(trx, events);
    }
  }
  // Each item learns its evaluation's new status once (the first item of a repeated id).
  const reported = new Set<string>();
  return items.map((i) => {
    const status = results.get(i.evaluationId);
    if (!status || reported.has(i.evaluationId)) return undefined;
    reported.add(i.evaluationId);
    return status;
  });
}

/** Whether two sets of score rows of one evaluation say the same thing. */
function sameResults(a: Selectable<ScoresTable>[], b: Selectable<ScoresTable>[]): boolean {
  const fingerprint = (rows: Selectable<ScoresTable>[]) =>
    JSON.stringify(rows.map((r) => [r.dimension, r.status, r.value, r.label, r.error_code, r.scorer_version]).sort());
  return fingerprint(a) === fingerprint(b);
}
