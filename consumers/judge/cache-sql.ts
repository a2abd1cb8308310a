// The judge cache's SQL, one question per function. Every statement finds its row through the
// table's primary key, judge_cache_pkey (dimension, scorer_version, judge_model, judge_endpoint,
// prompt_hash, inputs_hash) — the cache key, whose clause is written once, in `keyMatches` — except
// the pruning, which reads judge_cache_created_at_idx. Cache writes commit without waiting for the
// WAL flush (synchronous_commit = off for their own single-statement transaction only, set inside
// the statement so it costs no round trip): a database crash can lose the last fraction of a
// second of cache rows, so a claim vanishes (another replica claims again) or a verdict is paid
// for again. Exactly-once effects rest on the durable score rows, not on this cache.
import { sql, type RawBuilder } from 'kysely';
import type { Db } from '../../src/db/index.js';

export interface CacheKey {
  dimension: string;
  scorerVersion: string;
  judgeModel: string;
  /** The provider that answers (URL of its chat completions): one model name on two providers never shares verdicts. */
  judgeEndpoint: string;
  promptHash: string;
  inputsHash: string;
}

/** A cache row as the cache reads it: a verdict (DONE) or a claim, and what the verdict cost. */
export interface CacheRow {
  state: 'CLAIMED' | 'DONE';
  outcome: unknown;
  expires_in_ms: number | null;
  paid_by_application: string | null;
  input_tokens: number | null;
  output_tokens: number | null;
  cost_usd: string | number | null;
  latency_ms: number | null;
}

/** What a stored verdict keeps besides the key: the outcome and the paid call's usage. */
export interface StoredVerdict {
  outcome: unknown;
  endpointName: string;
  paidByApplication: string | null;
  inputTokens: number;
  outputTokens: number;
  costUsd: number | null;
  latencyMs: number;
}

const RELAXED_COMMIT = sql`SELECT set_config('synchronous_commit', 'off', true)`;

/** The cache key as a WHERE clause on `alias` (the one place it is spelt out). */
function keyMatches(key: CacheKey, alias: string): RawBuilder<boolean> {
  const t = sql.table(alias);
  return sql<boolean>`${t}.dimension = ${key.dimension} AND ${t}.scorer_version = ${key.scorerVersion} AND ${t}.judge_model = ${key.judgeModel}
    AND ${t}.judge_endpoint = ${key.judgeEndpoint} AND ${t}.prompt_hash = ${key.promptHash} AND ${t}.inputs_hash = ${key.inputsHash}`;
}

const ROW_COLUMNS = (alias: string) => {
  const t = sql.table(alias);
  return sql`${t}.state, ${t}.outcome, greatest(0, extract(epoch FROM ${t}.claim_expires_at - now()) * 1000)::float8 AS expires_in_ms,
    ${t}.paid_by_application, ${t}.input_tokens, ${t}.output_tokens, ${t}.cost_usd, ${t}.latency_ms`;
};

/** Reads one cache row: DONE with its outcome, a live or expired CLAIM, or nothing. */
export async function readCacheRow(db: Db, key: CacheKey): Promise<CacheRow | undefined> {
  const { rows } = await sql<CacheRow>`SELECT ${ROW_COLUMNS('j')} FROM judge_cache j WHERE ${keyMatches(key, 'j')}`.execute(db);
  return rows[0];
}

/**
 * Claims the key for `claimant` when no row exists, and otherwise reports the row as it was, in
 * one round trip. ON CONFLICT DO NOTHING takes no lock on an existing row, so a hit costs what a
 * SELECT costs. `row` is undefined when a concurrent claim committed after this statement's
 * snapshot: look again.
 */
export async function claimOrRead(db: Db, key: CacheKey, claimant: string, ttlMs: number): Promise<{ claimed: boolean; row: CacheRow | undefined }> {
  const { rows } = await sql<{ claimed: number } & Partial<CacheRow>>`
    WITH relaxed AS (${RELAXED_COMMIT}),
    claim AS (
      INSERT INTO judge_cache (dimension, scorer_version, judge_model, judge_endpoint, prompt_hash, inputs_hash, state, claimant, claim_expires_at)
      SELECT ${key.dimension}, ${key.scorerVersion}, ${key.judgeModel}, ${key.judgeEndpoint}, ${key.promptHash}, ${key.inputsHash}, 'CLAIMED', ${claimant},
             now() + make_interval(secs => ${ttlMs / 1000})
      FROM relaxed
      ON CONFLICT ON CONSTRAINT judge_cache_pkey DO NOTHING
      RETURNING 1
    )
    SELECT (SELECT count(*) FROM claim)::int AS claimed, ${ROW_COLUMNS('j')}
    FROM (VALUES (1)) AS one (x)
    LEFT JOIN judge_cache j ON ${keyMatches(key, 'j')}`.execute(db);
  const row = rows[0] as { claimed: number } & Partial<CacheRow>;
  return { claimed: row.claimed === 1, row: row.state ? (row as CacheRow) : undefined };
}

/** Takes over a claim whose holder is presumed dead (expired on the database clock). True if taken. */
export async function takeOverExpiredClaim(db: Db, key: CacheKey, claimant: string, ttlMs: number): Promise<boolean> {
  const result = await sql`
    WITH relaxed AS (${RELAXED_COMMIT})
    UPDATE judge_cache j SET claimant = ${claimant}, claim_expires_at = now() + make_interval(secs => ${ttlMs / 1000})
    FROM relaxed
    WHERE ${keyMatches(key, 'j')} AND j.state = 'CLAIMED' AND j.claim_expires_at < now()`.execute(db);
  return Number(result.numAffectedRows ?? 0) === 1;
}

/** Stores a verdict (first result wins; a DONE row is never changed). */
export async function storeVerdict(db: Db, key: CacheKey, verdict: StoredVerdict): Promise<void> {
  await sql`
    WITH relaxed AS (${RELAXED_COMMIT})
    INSERT INTO judge_cache AS c (dimension, scorer_version, judge_model, judge_endpoint, prompt_hash, inputs_hash, state, outcome, endpoint,
                                  paid_by_application, input_tokens, output_tokens, cost_usd, latency_ms, completed_at)
    SELECT ${key.dimension}, ${key.scorerVersion}, ${key.judgeModel}, ${key.judgeEndpoint}, ${key.promptHash}, ${key.inputsHash}, 'DONE',
           ${JSON.stringify(verdict.outcome)}::jsonb, ${verdict.endpointName}, ${verdict.paidByApplication}, ${verdict.inputTokens}::int,
           ${verdict.outputTokens}::int, ${verdict.costUsd}::numeric, ${verdict.latencyMs}::float8, now()
    FROM relaxed
    ON CONFLICT ON CONSTRAINT judge_cache_pkey DO UPDATE
      SET state = 'DONE', outcome = excluded.outcome, endpoint = excluded.endpoint, paid_by_application = excluded.paid_by_application,
          input_tokens = excluded.input_tokens, output_tokens = excluded.output_tokens, cost_usd = excluded.cost_usd,
          latency_ms = excluded.latency_ms, completed_at = excluded.completed_at, claimant = NULL, claim_expires_at = NULL
      WHERE c.state = 'CLAIMED'`.execute(db);
}

/** Gives up a claim after a failed call, so a waiting replica takes over at once. */
export async function releaseClaim(db: Db, key: CacheKey, claimant: string): Promise<void> {
  await sql`
    WITH relaxed AS (${RELAXED_COMMIT})
    DELETE FROM judge_cache j
    USING relaxed
    WHERE ${keyMatches(key, 'j')} AND j.state = 'CLAIMED' AND j.claimant = ${claimant}`.execute(db);
}

/** Deletes cached verdicts older than `olderThanMs` (and dead claims); reads judge_cache_created_at_idx. */
export async function pruneJudgeCache(db: Db, olderThanMs: number): Promise<number> {
  const result = await sql`
    DELETE FROM judge_cache
    WHERE created_at < now() - make_interval(secs => ${olderThanMs / 1000})
      AND (state = 'DONE' OR claim_expires_at < now())`.execute(db);
  return Number(result.numAffectedRows ?? 0);
}
