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
import type { Db } from '../../src/db/index.js';
import { classifyPgError, coerceError, RetryableError } from '../../src/errors.js';
import { COST_MAX, INT4_MAX } from '../score-rows.js';
import { claimOrRead, readCacheRow, releaseClaim, storeVerdict, takeOverExpiredClaim, type CacheKey, type CacheRow } from './cache-sql.js';

export { claimOrRead, pruneJudgeCache, readCacheRow, releaseClaim, takeOverExpiredClaim, type CacheKey } from './cache-sql.js';
import { sleep, withRetry, type BackoffPolicy } from '../../src/retry.js';
import type { JudgeOutcome } from './client.js';
import type { JudgeCacheConfig } from './config.js';
import type { Admission } from './endpoint.js';
import type { JudgeEventEmitter } from './events.js';
import type { JudgeInputs } from './rubrics.js';

export interface JudgeRequest {
  dimension: string;
  inputs: JudgeInputs;
  signal?: AbortSignal;
  /** The tenant asking: a verdict another application paid for is not shown to it as a hit. */
  applicationId?: string;
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
  /** In-process sharing of identical concurrent calls (one per judge instance), with who asked first. */
  inflight?: Map<string, { work: Promise<JudgeOutcome>; applicationId?: string }>;
  /** Verdict writes still under way (they are off the caller's path); await them before closing the pool. */
  pendingWrites?: Set<Promise<void>>;
  /** Fires when the judge closes: a verdict write that keeps failing stops retrying. */
  closing?: AbortSignal;
  options?: JudgeCacheConfig;
}

/** What the cache keeps of an outcome; the key supplies model, prompt hash and version. */
type StoredOutcome = Pick<
  JudgeOutcome,
  'status' | 'value' | 'label' | 'rawValue' | 'reasoning' | 'direction' | 'errorCode' | 'scorerName' | 'endpoint' | 'responseFormat'
>;

const keyId = (k: CacheKey): string => JSON.stringify([k.dimension, k.scorerVersion, k.judgeModel, k.judgeEndpoint, k.promptHash, k.inputsHash]);

/** Stores a paid verdict (first result wins; a DONE row is never changed). */
export async function storeOutcome(db: Db, key: CacheKey, outcome: JudgeOutcome, paidByApplication: string | null = null): Promise<void> {
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
  await storeVerdict(db, key, {
    outcome: stored,
    endpointName: outcome.endpoint,
    paidByApplication,
    inputTokens: Math.min(outcome.inputTokens, INT4_MAX),
    outputTokens: Math.min(outcome.outputTokens, INT4_MAX),
    costUsd: outcome.costUsd === null ? null : Math.min(outcome.costUsd, COST_MAX),
    latencyMs: outcome.latencyMs,
  });
}

function asHit(
  outcome: Omit<JudgeOutcome, 'cacheHit' | 'inputTokens' | 'outputTokens' | 'costUsd' | 'requests' | 'latencyMs'>,
  latencyMs: number,
): JudgeOutcome {
  return { ...outcome, cacheHit: true, inputTokens: 0, outputTokens: 0, costUsd: 0, requests: 0, latencyMs };
}

/**
 * A stored verdict as `applicationId` sees it. To the application that paid for it, a hit (zero
 * tokens, zero cost). To any other, exactly what a fresh call would have shown — not a hit, the
 * paid call's tokens, cost and latency — so a tenant cannot learn whether another tenant already
 * submitted the same text. The verdict itself is shared: nobody pays twice for it.
 */
function fromRow(key: CacheKey, row: CacheRow, applicationId: string | undefined, latencyMs: number): JudgeOutcome {
  const stored = row.outcome as StoredOutcome;
  const base = { ...stored, dimension: key.dimension, scorerVersion: key.scorerVersion, judgeModel: key.judgeModel, promptHash: key.promptHash };
  if (applicationId === undefined || row.paid_by_application === null || row.paid_by_application === applicationId) return asHit(base, latencyMs);
  return {
    ...base,
    cacheHit: false,
    inputTokens: row.input_tokens ?? 0,
    outputTokens: row.output_tokens ?? 0,
    costUsd: row.cost_usd === null ? null : Number(row.cost_usd),
    latencyMs: row.latency_ms ?? latencyMs,
    requests: 0,
  };
}

/** A verdict shared in-process, as `applicationId` sees it (see fromRow). */
function asSeenBy(outcome: JudgeOutcome, paidBy: string | undefined, applicationId: string | undefined, latencyMs: number): JudgeOutcome {
  if (outcome.cacheHit) return outcome;
  if (applicationId === undefined || paidBy === undefined || paidBy === applicationId) return asHit(outcome, latencyMs);
  return { ...outcome, requests: 0 };
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
    const outcome = await abandonOnAbort(shared.work, request.signal, prepared.endpoint);
    ctx.events?.emit('judge:cache', { dimension: prepared.key.dimension, result: 'shared' });
    return asSeenBy(outcome, shared.applicationId, request.applicationId, performance.now() - started);
  }
  let stored: Promise<void> | undefined;
  const work = resolveThroughCache(ctx, prepared, request, (write) => {
    stored = write;
  });
  // Followers get the outcome as soon as it exists; the entry stays until the verdict is stored,
  // so a duplicate arriving meanwhile shares it instead of polling the claim.
  work.catch(() => undefined);
  ctx.inflight?.set(id, { work, ...(request.applicationId === undefined ? {} : { applicationId: request.applicationId }) });
  try {
    const outcome = await abandonOnAbort(work, request.signal, prepared.endpoint);
    if (stored) void stored.finally(() => ctx.inflight?.delete(id));
    else ctx.inflight?.delete(id);
    return outcome;
  } catch (error) {
    ctx.inflight?.delete(id);
    throw error;
  }
}

/** `work`, or a RetryableError(JUDGE_ABORTED) as soon as `signal` fires; the work goes on. */
function abandonOnAbort<T>(work: Promise<T>, signal: AbortSignal | undefined, endpoint: string): Promise<T> {
  if (!signal) return work;
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new RetryableError(`judge call on ${endpoint} abandoned by its caller`, { code: 'JUDGE_ABORTED' }));
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

async function resolveThroughCache(
  ctx: JudgeCacheContext,
  call: PreparedCall,
  request: JudgeRequest,
  onWrite: (write: Promise<void>) => void,
): Promise<JudgeOutcome> {
  const { db, events } = ctx;
  const { signal, applicationId } = request;
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
  const hit = (row: CacheRow): JudgeOutcome => {
    events?.emit('judge:cache', { dimension: key.dimension, result: 'hit' });
    return fromRow(key, row, applicationId, performance.now() - started);
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
    return executeClaimed(ctx, call, admission, claimant, applicationId ?? null, onWrite);
  };

  let waitingSince: number | undefined;
  let pollMs = pollMinMs;
  for (;;) {
    const first = await withDb(() => claimOrRead(db, key, claimant, call.claimTtlMs));
    if (first.claimed) return runClaimed();
    let row = first.row;
    if (row?.state === 'DONE' && row.outcome) return hit(row);
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
      if (row?.state === 'DONE' && row.outcome) return hit(row);
    }
  }
}

async function executeClaimed(
  ctx: JudgeCacheContext,
  call: PreparedCall,
  admission: Admission,
  claimant: string,
  paidBy: string | null,
  onWrite: (write: Promise<void>) => void,
): Promise<JudgeOutcome> {
  let outcome: JudgeOutcome;
  try {
    // Once the provider is answering, the call is paid for: the caller's abort (a revoked
    // partition, a shutdown) does not cancel it. It finishes into the cache, bounded by the
    // endpoint's timeout (and by judge.close()), so whoever scores this content next gets a hit.
    outcome = await call.execute(admission);
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
  // on the claim see it a round trip later. While the database is unreachable the write is
  // retried (and the in-process entry keeps the verdict for a redelivery here): given up, the
  // claim would only expire and the next duplicate pay again.
  const write = storeUntilStored(ctx, call, outcome, paidBy).catch((error: unknown) => {
    ctx.events?.emit('judge:cacheError', { dimension: call.key.dimension, error: coerceError(error) });
  });
  ctx.pendingWrites?.add(write);
  void write.finally(() => ctx.pendingWrites?.delete(write));
  onWrite(write);
  return outcome;
}

/** How a paid verdict's store is retried while the database is unreachable (its age bound is the claim's TTL). */
const VERDICT_STORE_BACKOFF: Omit<BackoffPolicy, 'maxAgeMs'> = { baseMs: 100, maxMs: 2000, maxAttempts: Number.MAX_SAFE_INTEGER };

/**
 * Stores a paid verdict, retrying transient database failures until the claim's TTL has passed
 * (after that another replica may have taken the claim over and paid) or the judge closes.
 */
function storeUntilStored(ctx: JudgeCacheContext, call: PreparedCall, outcome: JudgeOutcome, paidBy: string | null): Promise<void> {
  const store = async () => {
    try {
      await storeOutcome(ctx.db, call.key, outcome, paidBy);
    } catch (error) {
      throw classifyPgError(error);
    }
  };
  return withRetry(store, { ...VERDICT_STORE_BACKOFF, maxAgeMs: call.claimTtlMs }, ctx.closing ? { signal: ctx.closing } : {});
}

/** A claim that cannot be released (database down) simply expires; the caller's error matters more. */
async function releaseQuietly(ctx: JudgeCacheContext, key: CacheKey, claimant: string): Promise<void> {
  try {
    await releaseClaim(ctx.db, key, claimant);
  } catch (error) {
    ctx.events?.emit('judge:cacheError', { dimension: key.dimension, error: coerceError(error) });
  }
}
