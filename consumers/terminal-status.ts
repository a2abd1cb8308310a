// The one place that decides what is final: which stored score rows are results to keep, when an
// evaluation is terminal, and which terminal status its rows give it. The scorer (what to score
// again), the score store (what to write, what to publish) and the upsert guard all ask here.
import { sql, type RawBuilder } from 'kysely';
import type { EvaluationStatus } from '../src/db/types.js';

/** The status of an evaluation whose every requested dimension is written. */
export type TerminalStatus = Exclude<EvaluationStatus, 'PENDING'>;

interface StoredRow {
  status: string;
  scorer_version: string;
}

/** A stored result that is final: COMPLETED or SKIPPED. ERROR is terminal but may be redriven. */
export function isResult(status: string | undefined): boolean {
  return status === 'COMPLETED' || status === 'SKIPPED';
}

/**
 * Whether the stored row of a dimension is kept instead of scoring it again: a result of the
 * scorer's version is never scored (or paid for) twice; a redrive of a terminal evaluation keeps
 * every result whatever its version (it retries only the ERROR dimensions).
 */
export function keepsStoredResult(stored: StoredRow | undefined, scorerVersion: string | undefined, redriveOfTerminal: boolean): boolean {
  if (!stored || !isResult(stored.status)) return false;
  return (scorerVersion !== undefined && stored.scorer_version === scorerVersion) || redriveOfTerminal;
}

/** An evaluation is terminal when its status is and every requested dimension has a written row. */
export function isTerminalEvaluation(evaluation: { status: EvaluationStatus; dimensions: string[] }, rows: Map<string, { status: string }>): boolean {
  if (evaluation.status === 'PENDING') return false;
  return evaluation.dimensions.every((d) => {
    const status = rows.get(d)?.status;
    return status !== undefined && status !== 'PENDING';
  });
}

/**
 * The terminal status the rows of the requested dimensions give an evaluation: SCORED when none
 * is ERROR, SCORING_FAILED when all are, PARTIALLY_SCORED otherwise; undefined while a dimension
 * has no row or a PENDING one (not terminal yet). Rows of dimensions not requested do not count.
 */
export function evaluationStatus(dimensions: string[], rows: { dimension: string; status: string }[]): TerminalStatus | undefined {
  const own = rows.filter((r) => dimensions.includes(r.dimension));
  const covered = new Set(own.map((r) => r.dimension));
  if (dimensions.some((d) => !covered.has(d)) || own.some((r) => r.status === 'PENDING')) return undefined;
  const errors = own.filter((r) => r.status === 'ERROR').length;
  return errors === 0 ? 'SCORED' : errors === own.length ? 'SCORING_FAILED' : 'PARTIALLY_SCORED';
}

/**
 * The upsert's guard, whether a new row replaces the stored one of its dimension (stored =
 * `scores`, new = `excluded`): a COMPLETED result of the same scorer version never changes, and a
 * COMPLETED result is never replaced by an ERROR.
 */
export const REPLACES_STORED_SQL: RawBuilder<boolean> = sql<boolean>`NOT (scores.status = 'COMPLETED' AND (scores.scorer_version = excluded.scorer_version OR excluded.status = 'ERROR'))`;
