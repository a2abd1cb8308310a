// Never pay twice: a judge result cache in Postgres keyed by (dimension, scorer version, judge
// model, prompt hash, normalised inputs hash). Identical content in another evaluation is a hit
// (cacheHit, zero tokens, zero cost). Concurrent duplicates across scorer replicas make one call:
// the first caller inserts a CLAIM row (INSERT … ON CONFLICT with a claimant id and an expiry on
// the database clock), the others poll for its result, bounded, and take the claim over once it
// has expired (its holder died). A hit costs one statement, a miss two (claim, then the store,
// which runs alongside the caller instead of in front of it). Inside one
// process, duplicates share one promise and never touch the database twice. No connection or
// transaction is held during the HTTP call.
import { randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import type { Db } from '../../src/db/index.js';
import { classifyPgError, coerceError, RetryableError } from '../../src/errors.js';
import { sleep } from '../../src/retry.js';
import type { JudgeOutcome } from './client.js';
import type { JudgeCacheConfig } from './config.js';
import type { Admission } from './endpoint.js';
import type { JudgeEventEmitter } from './events.js';
import type { JudgeInputs } from './rubrics.js';

export interface CacheKey {
  dimension: string;
  scorerVersion: string;
  judgeModel: string;
  promptHash: string;
  inputsHash: string;
}

export interface JudgeRequest {
  dimension: string;
  inputs: JudgeInputs;
  signal?: AbortSignal;
}

/** One judge call ready to run: its cache key, and how to admit and execute it. */
export interface PreparedCall {
  key: CacheKey;
  /** The endpoint's name, for events. */
  endpoint: string;
  /** How long a claim for this call may live: longer than admission plus the call can take. */
  claimTtlMs: number;
  admit(signal?: AbortSignal): Promise<Admission>;
  /** Runs the call under `admission` and releases it. */
  execute(admission: Admission, signal?: AbortSignal): Promise<JudgeOutcome>;
}

export interface JudgeRunner {
  /** The prepared call, or an outcome that needs no call (SKIPPED: a required input is missing). */
  prepare(request: JudgeRequest): PreparedCall | { outcome: JudgeOutcome };
}

export interface JudgeCacheContext {
  db: Db;
  runner: JudgeRunner;
  /** Identifies this replica in claim rows (for people reading the table). */
  claimantId: string;
  events?: JudgeEventEmitter;
  /** In-process sharing of identical concurrent calls (one per judge instance). */
  inflight?: Map<string, Promise<JudgeOutcome>>;
  /** Verdict writes still under way (they are off the caller's path); await them before closing the pool. */
  pendingWrites?: Set<Promise<void>>;
  options?: JudgeCacheConfig;
}

interface CacheRow {
  state: 'CLAIMED' | 'DONE';
  outcome: StoredOutcome | null;
  expires_in_ms: number | null;
}

/** What the cache keeps of an outcome; the key supplies model, prompt hash and version. */
type StoredOutcome = Pick<
  JudgeOutcome,
  'status' | 'value' | 'label' | 'rawValue' | 'reasoning' | 'direction' | 'errorCode' | 'scorerName' | 'endpoint' | 'responseFormat'
>;

/**
 * Cache writes commit without waiting for the WAL flush (synchronous_commit = off for their own
 * single-statement transaction only, set inside the statement so it costs no round trip). A
 * database crash can lose the last fraction of a second of cache rows: a claim then simply
 * vanishes (another replica claims again) and a verdict is paid for again. Exactly-once effects
 * rest on the durable score rows, not on this cache; halving the fsyncs per judge call is worth it
 * (see docs/judge.md for the numbers).
 */
const RELAXED_COMMIT = sql`SELECT set_config('synchronous_commit', 'off', true)`;

const keyId = (k: CacheKey): string => JSON.stringify([k.dimension, k.scorerVersion, k.judgeModel, k.promptHash, k.inputsHash]);

/** Reads one cache row: DONE with its outcome, a live or expired CLAIM, or nothing. */
export async function readCacheRow(db: Db, key: CacheKey): Promise<CacheRow | undefined> {
  const { rows } = await sql<CacheRow>`
    SELECT state, outcome, greatest(0, extract(epoch FROM claim_expires_at - now()) * 1000)::float8 AS expires_in_ms
    FROM judge_cache
    WHERE dimension = ${key.dimension} AND scorer_version = ${key.scorerVersion} AND judge_model = ${key.judgeModel}
      AND prompt_hash = ${key.promptHash} AND inputs_hash = ${key.inputsHash}`.execute(db);
  return rows[0];
}

/**
 * The first look, in one round trip: claims the key for `claimant` when no row exists, and
 * otherwise reports the row as it was. ON CONFLICT DO NOTHING takes no lock on an existing row,
 * so a cache hit costs what a SELECT costs. `row` is undefined when a concurrent claim committed
 * after this statement's snapshot: look again.
 */
export async function claimOrRead(db: Db, key: CacheKey, claimant: string, ttlMs: number): Promise<{ claimed: boolean; row: CacheRow | undefined }> {
  const { rows } = await sql<{ claimed: number } & Partial<CacheRow>>`
    WITH relaxed AS (${RELAXED_COMMIT}),
    claim AS (
      INSERT INTO judge_cache (dimension, scorer_version, judge_model, prompt_hash, inputs_hash, state, claimant, claim_expires_at)
      SELECT ${key.dimension}, ${key.scorerVersion}, ${key.judgeModel}, ${key.promptHash}, ${key.inputsHash}, 'CLAIMED', ${claimant},
             now() + make_interval(secs => ${ttlMs / 1000})
      FROM relaxed
      ON CONFLICT (dimension, scorer_version, judge_model, prompt_hash, inputs_hash) DO NOTHING
      RETURNING 1
    )
    SELECT (SELECT count(*) FROM claim)::int AS claimed, j.state, j.outcome,
           greatest(0, extract(epoch FROM j.claim_expires_at - now()) * 1000)::float8 AS expires_in_ms
    FROM (VALUES (1)) AS one (x)
    LEFT JOIN judge_cache j
      ON j.dimension = ${key.dimension} AND j.scorer_version = ${key.scorerVersion} AND j.judge_model = ${key.judgeModel}
     AND j.prompt_hash = ${key.promptHash} AND j.inputs_hash = ${key.inputsHash}`.execute(db);
  const row = rows[0] as { claimed: number } & Partial<CacheRow>;
  return {
    claimed: row.claimed === 1,
    row: row.state ? { state: row.state, outcome: row.outcome ?? null, expires_in_ms: row.expires_in_ms ?? null } : undefined,
  };
}

/** Takes over a claim whose holder is presumed dead (expired on the database clock). True if taken. */
export async function takeOverExpiredClaim(db: Db, key: CacheKey, claimant: string, ttlMs: number): Promise<boolean> {
  const result = await sql`
    WITH relaxed AS (${RELAXED_COMMIT})
    UPDATE judge_cache SET claimant = ${claimant}, claim_expires_at = now() + make_interval(secs => ${ttlMs / 1000})
    FROM relaxed
    WHERE dimension = ${key.dimension} AND scorer_version = ${key.scorerVersion} AND judge_model = ${key.judgeModel}
      AND prompt_hash = ${key.promptHash} AND inputs_hash = ${key.inputsHash} AND state = 'CLAIMED' AND claim_expires_at < now()`.execute(db);
  return Number(result.numAffectedRows ?? 0) === 1;
}

/** Stores a verdict (first result wins; a DONE row is never changed). */
export async function storeOutcome(db: Db, key: CacheKey, outcome: JudgeOutcome): Promise<void> {
  const stored: StoredOutcome = {
    status: outcome.status,
    value: outcome.value,
    label: outcome.label,
    rawValue: outcome.rawValue,
    reasoning: outcome.reasoning,
    direction: outcome.direction,
    errorCode: outcome.errorCode,
    scorerName: outcome.scorerName,
    endpoint: outcome.endpoint,
    responseFormat: outcome.responseFormat,
  };
  await sql`
    WITH relaxed AS (${RELAXED_COMMIT})
    INSERT INTO judge_cache AS c (dimension, scorer_version, judge_model, prompt_hash, inputs_hash, state, outcome, endpoint,
                                  input_tokens, output_tokens, cost_usd, latency_ms, completed_at)
    SELECT ${key.dimension}, ${key.scorerVersion}, ${key.judgeModel}, ${key.promptHash}, ${key.inputsHash}, 'DONE', ${JSON.stringify(stored)}::jsonb,
           ${outcome.endpoint}, ${outcome.inputTokens}::int, ${outcome.outputTokens}::int, ${outcome.costUsd}::numeric, ${outcome.latencyMs}::float8, now()
    FROM relaxed
    ON CONFLICT (dimension, scorer_version, judge_model, prompt_hash, inputs_hash) DO UPDATE
      SET state = 'DONE', outcome = excluded.outcome, endpoint = excluded.endpoint, input_tokens = excluded.input_tokens,
          output_tokens = excluded.output_tokens, cost_usd = excluded.cost_usd, latency_ms = excluded.latency_ms,
          completed_at = excluded.completed_at, claimant = NULL, claim_expires_at = NULL
      WHERE c.state = 'CLAIMED'`.execute(db);
}

/** Gives up a claim after a failed call, so a waiting replica takes over at once. */
export async function releaseClaim(db: Db, key: CacheKey, claimant: string): Promise<void> {
  await sql`
    WITH relaxed AS (${RELAXED_COMMIT})
    DELETE FROM judge_cache
    USING relaxed
    WHERE dimension = ${key.dimension} AND scorer_version = ${key.scorerVersion} AND judge_model = ${key.judgeModel}
      AND prompt_hash = ${key.promptHash} AND inputs_hash = ${key.inputsHash} AND state = 'CLAIMED' AND claimant = ${claimant}`.execute(db);
}

/** Deletes cached verdicts older than `olderThanMs` (and dead claims). Returns the number removed. */
export async function pruneJudgeCache(db: Db, olderThanMs: number): Promise<number> {
  const result = await sql`
    DELETE FROM judge_cache
    WHERE created_at < now() - make_interval(secs => ${olderThanMs / 1000})
      AND (state = 'DONE' OR claim_expires_at < now())`.execute(db);
  return Number(result.numAffectedRows ?? 0);
}

function asHit(
  outcome: Omit<JudgeOutcome, 'cacheHit' | 'inputTokens' | 'outputTokens' | 'costUsd' | 'requests' | 'latencyMs'>,
  latencyMs: number,
): JudgeOutcome {
  return { ...outcome, cacheHit: true, inputTokens: 0, outputTokens: 0, costUsd: 0, requests: 0, latencyMs };
}

function fromRow(key: CacheKey, stored: StoredOutcome, latencyMs: number): JudgeOutcome {
  return asHit({ ...stored, dimension: key.dimension, scorerVersion: key.scorerVersion, judgeModel: key.judgeModel, promptHash: key.promptHash }, latencyMs);
}

/**
 * The judge's answer for `request`, paying for a call only when no replica has the verdict yet.
 * Returns the outcome with `cacheHit`; throws what the call throws (RetryableError /
 * PermanentError), or RetryableError(JUDGE_CLAIM_BUSY) when another replica's claim outlives
 * the wait bound.
 */
export async function judgeWithCache(ctx: JudgeCacheContext, request: JudgeRequest): Promise<JudgeOutcome> {
  const prepared = ctx.runner.prepare(request);
  if ('outcome' in prepared) return prepared.outcome;
  const id = keyId(prepared.key);
  const shared = ctx.inflight?.get(id);
  if (shared) {
    const started = performance.now();
    const outcome = await shared;
    ctx.events?.emit('judge:cache', { dimension: prepared.key.dimension, result: 'shared' });
    return outcome.cacheHit ? outcome : asHit(outcome, performance.now() - started);
  }
  let stored: Promise<void> | undefined;
  const work = resolveThroughCache(ctx, prepared, request.signal, (write) => {
    stored = write;
  });
  // Followers get the outcome as soon as it exists; the entry stays until the verdict is stored,
  // so a duplicate arriving meanwhile shares it instead of polling the claim.
  work.catch(() => undefined);
  ctx.inflight?.set(id, work);
  try {
    const outcome = await work;
    if (stored) void stored.finally(() => ctx.inflight?.delete(id));
    else ctx.inflight?.delete(id);
    return outcome;
  } catch (error) {
    ctx.inflight?.delete(id);
    throw error;
  }
}

async function resolveThroughCache(
  ctx: JudgeCacheContext,
  call: PreparedCall,
  signal: AbortSignal | undefined,
  onWrite: (write: Promise<void>) => void,
): Promise<JudgeOutcome> {
  const { db, events } = ctx;
  const key = call.key;
  const started = performance.now();
  const claimant = `${ctx.claimantId}/${randomBytes(6).toString('hex')}`;
  const maxWaitMs = ctx.options?.maxWaitMs ?? call.claimTtlMs;
  const pollMinMs = ctx.options?.pollMinMs ?? 20;
  const pollMaxMs = ctx.options?.pollMaxMs ?? 250;
  const withDb = async <T>(work: () => Promise<T>): Promise<T> => {
    try {
      return await work();
    } catch (error) {
      throw classifyPgError(error);
    }
  };
  const hit = (stored: StoredOutcome): JudgeOutcome => {
    events?.emit('judge:cache', { dimension: key.dimension, result: 'hit' });
    return fromRow(key, stored, performance.now() - started);
  };
  const runClaimed = async (): Promise<JudgeOutcome> => {
    events?.emit('judge:cache', { dimension: key.dimension, result: 'miss' });
    let admission: Admission;
    try {
      admission = await call.admit(signal);
    } catch (error) {
      // Circuit open, throttled, queue full: give the claim back so nobody waits on it.
      await releaseQuietly(ctx, key, claimant);
      throw error;
    }
    return executeClaimed(ctx, call, admission, claimant, signal, onWrite);
  };

  let waitingSince: number | undefined;
  let pollMs = pollMinMs;
  for (;;) {
    const first = await withDb(() => claimOrRead(db, key, claimant, call.claimTtlMs));
    if (first.claimed) return runClaimed();
    let row = first.row;
    if (row?.state === 'DONE' && row.outcome) return hit(row.outcome);
    if (!row) continue; // a claim committed after our snapshot: look again

    // Another replica holds a claim: wait for its verdict, or take the claim over once it expires.
    for (;;) {
      if (row?.state === 'CLAIMED' && (row.expires_in_ms ?? 0) <= 0) {
        if (await withDb(() => takeOverExpiredClaim(db, key, claimant, call.claimTtlMs))) return runClaimed();
        break;
      }
      if (!row) break; // released after a failure: try to claim it ourselves
      waitingSince ??= performance.now();
      const waited = performance.now() - waitingSince;
      if (waited >= maxWaitMs || signal?.aborted) {
        events?.emit('judge:retry', { endpoint: call.endpoint, dimension: key.dimension, class: 'claim_busy' });
        throw new RetryableError(`judge call for ${key.dimension} is in progress on another replica (waited ${Math.round(waited)} ms)`, {
          code: 'JUDGE_CLAIM_BUSY',
          retryAfterMs: Math.max(pollMaxMs, Math.ceil(row.expires_in_ms ?? 0)),
        });
      }
      await sleep(Math.min(pollMs, maxWaitMs - waited), signal);
      pollMs = Math.min(pollMaxMs, pollMs * 2);
      row = await withDb(() => readCacheRow(db, key));
      if (row?.state === 'DONE' && row.outcome) return hit(row.outcome);
    }
  }
}

async function executeClaimed(
  ctx: JudgeCacheContext,
  call: PreparedCall,
  admission: Admission,
  claimant: string,
  signal: AbortSignal | undefined,
  onWrite: (write: Promise<void>) => void,
): Promise<JudgeOutcome> {
  let outcome: JudgeOutcome;
  try {
    outcome = await call.execute(admission, signal);
  } catch (error) {
    await releaseQuietly(ctx, call.key, claimant);
    throw error;
  }
  if (outcome.status !== 'COMPLETED') {
    // An unusable answer is not cached: a later attempt (a redrive) deserves a fresh call.
    await releaseQuietly(ctx, call.key, claimant);
    return outcome;
  }
  // The verdict is paid for and valid: hand it back now and store it alongside. Replicas waiting
  // on the claim see it a round trip later; if the write fails (the database is down), the claim
  // expires and a later duplicate pays again, the price of an outage at this exact moment.
  const write = storeOutcome(ctx.db, call.key, outcome).catch((error: unknown) => {
    ctx.events?.emit('judge:cacheError', { dimension: call.key.dimension, error: coerceError(error) });
  });
  ctx.pendingWrites?.add(write);
  void write.finally(() => ctx.pendingWrites?.delete(write));
  onWrite(write);
  return outcome;
}

/** A claim that cannot be released (database down) simply expires; the caller's error matters more. */
async function releaseQuietly(ctx: JudgeCacheContext, key: CacheKey, claimant: string): Promise<void> {
  try {
    await releaseClaim(ctx.db, key, claimant);
  } catch (error) {
    ctx.events?.emit('judge:cacheError', { dimension: key.dimension, error: coerceError(error) });
  }
}
