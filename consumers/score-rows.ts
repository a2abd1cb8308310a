// The one mapping from a scorer's result to a `scores` row: `heuristicRow` and `judgeRow` turn an
// offline or a judge outcome into row values, `errorRow` a failure. Every row the scorer writes passes
// through `toScoreRecord`, which makes anything a scorer or a judge can return storable: text
// loses NUL characters (Postgres text and jsonb cannot hold them), token counts are clamped to
// the integer column, cost to its numeric(14, 8) column, and non-finite numbers become null. An
// input can therefore not turn a paid verdict into a write that fails on every retry.
import type { DimensionDefinition } from '../src/dimensions.js';
import type { EvalboxError } from '../src/errors.js';
import type { HeuristicOutcome } from './heuristics/types.js';
import type { JudgeOutcome } from './judge/client.js';
import type { ScoreRowValues } from './score-store.js';

export const INT4_MAX = 2_147_483_647;
/** numeric(14, 8): six digits before the point. */
export const COST_MAX = 999_999.99999999;

export type ScoreRecord = ScoreRowValues & { evaluation_id: string; attempts: number };

// eslint-disable-next-line no-control-regex -- NUL is exactly what Postgres cannot store in text
const NUL = /\u0000/g;

/** Text as Postgres can store it: NUL replaced by U+FFFD. */
export function storableText<T extends string | null | undefined>(text: T): T {
  return (typeof text === 'string' && text.includes('\u0000') ? text.replace(NUL, '\uFFFD') : text) as T;
}

const clamp = (n: number | null | undefined, max: number): number | null => {
  if (n === null || n === undefined || !Number.isFinite(n)) return null;
  return Math.min(Math.max(n, 0), max);
};

const finiteOrNull = (n: number | null | undefined): number | null => (n === null || n === undefined || !Number.isFinite(n) ? null : n);

/** The row written for `evaluationId`, every field storable. */
export function toScoreRecord(evaluationId: string, row: ScoreRowValues, attempts: number): ScoreRecord {
  const tokens = (n: number | null | undefined) => {
    const v = clamp(n, INT4_MAX);
    return v === null ? null : Math.round(v);
  };
  return {
    evaluation_id: evaluationId,
    attempts: Math.min(attempts, INT4_MAX),
    dimension: row.dimension,
    status: row.status,
    value: finiteOrNull(row.value),
    label: storableText(row.label),
    raw_value: finiteOrNull(row.raw_value),
    direction: row.direction,
    reasoning: storableText(row.reasoning),
    source: row.source,
    scorer_name: storableText(row.scorer_name),
    scorer_version: storableText(row.scorer_version),
    error_code: storableText(row.error_code),
    judge_model: storableText(row.judge_model ?? null),
    prompt_hash: storableText(row.prompt_hash ?? null),
    input_tokens: tokens(row.input_tokens),
    output_tokens: tokens(row.output_tokens),
    latency_ms: finiteOrNull(row.latency_ms),
    cost_usd: clamp(row.cost_usd === null || row.cost_usd === undefined ? null : Number(row.cost_usd), COST_MAX),
    cache_hit: row.cache_hit ?? false,
  };
}

/** The columns every row of a scorer shares. */
export function baseRow(
  scorer: { dimension: string; name: string; version: string },
  kind: 'HEURISTIC' | 'LLM_JUDGE',
  direction: ScoreRowValues['direction'],
): ScoreRowValues {
  return {
    dimension: scorer.dimension,
    status: 'SKIPPED',
    value: null,
    label: null,
    raw_value: null,
    direction,
    reasoning: null,
    source: kind,
    scorer_name: scorer.name,
    scorer_version: scorer.version,
    error_code: null,
  };
}

/** An ERROR row: no value, the error's code and message. */
export function errorRow(dimension: string, kind: 'HEURISTIC' | 'LLM_JUDGE', name: string, version: string, error: EvalboxError): ScoreRowValues {
  return {
    ...baseRow({ dimension, name, version }, kind, null),
    status: 'ERROR',
    label: 'error',
    reasoning: error.message.slice(0, 500),
    error_code: error.code,
  };
}

/** The row of an offline scorer's outcome; `confidenceNote` adds its confidence to the reasoning. */
export function heuristicRow(
  scorer: { dimension: string; name: string; version: string },
  definition: Pick<DimensionDefinition, 'direction'>,
  outcome: HeuristicOutcome,
  latencyMs: number,
  confidenceNote = false,
): ScoreRowValues {
  const base = { ...baseRow(scorer, 'HEURISTIC', definition.direction), latency_ms: latencyMs };
  if (outcome.status !== 'COMPLETED') return { ...base, status: 'SKIPPED', label: outcome.label, reasoning: outcome.reasoning };
  return {
    ...base,
    status: 'COMPLETED',
    value: outcome.value,
    raw_value: outcome.rawValue,
    label: outcome.label,
    reasoning: confidenceNote ? `${outcome.reasoning} (confidence ${outcome.confidence})` : outcome.reasoning,
  };
}

/** The row of a judge's outcome (its status is the judge's: COMPLETED, SKIPPED or ERROR). */
export function judgeRow(outcome: JudgeOutcome): ScoreRowValues {
  return {
    dimension: outcome.dimension,
    value: outcome.value,
    label: outcome.label,
    raw_value: outcome.rawValue,
    direction: outcome.direction,
    reasoning: outcome.reasoning,
    source: 'LLM_JUDGE',
    scorer_name: outcome.scorerName,
    scorer_version: outcome.scorerVersion,
    judge_model: outcome.judgeModel,
    prompt_hash: outcome.promptHash,
    status: outcome.status,
    error_code: outcome.errorCode,
    input_tokens: outcome.inputTokens,
    output_tokens: outcome.outputTokens,
    latency_ms: outcome.latencyMs,
    cost_usd: outcome.costUsd === null ? null : Number(outcome.costUsd),
    cache_hit: outcome.cacheHit,
  };
}
