// Builds the consumer's Map<dimension, Scorer> from the offline heuristics and, when a judge is
// configured, the LLM judge's scorers.
import { performance } from 'node:perf_hooks';
import type { DimensionDefinition } from '../src/dimensions.js';
import { HEURISTIC_SCORERS, type HeuristicScorer } from './heuristics/index.js';
import { isRetryable } from '../src/errors.js';
import { isProviderPressure, type Judge } from './judge/index.js';
import { heuristicRow, judgeRow } from './score-rows.js';
import type { KeyParallelConsumer } from './runtime.js';
import type { Scorer } from './scorer.js';

export function heuristicScorer(heuristic: HeuristicScorer, definition: DimensionDefinition): Scorer {
  return {
    dimension: heuristic.dimension,
    name: heuristic.name,
    version: heuristic.version,
    async score(inputs) {
      const started = performance.now();
      const outcome = heuristic.score(inputs);
      return heuristicRow(heuristic, definition, outcome, performance.now() - started);
    },
  };
}

export function judgeScorer(judge: Judge, definition: DimensionDefinition): Scorer {
  return {
    dimension: definition.id,
    name: definition.scorerName,
    version: definition.scorerVersion,
    async score(inputs, { signal, applicationId }) {
      return judgeRow(await judge.score(definition.id, inputs, { signal, applicationId }));
    },
  };
}

export function buildScorers(definitions: DimensionDefinition[], judge?: Judge): Map<string, Scorer> {
  const scorers = new Map<string, Scorer>();
  for (const definition of definitions) {
    const heuristic = HEURISTIC_SCORERS.get(definition.id);
    if (definition.scorerKind === 'HEURISTIC' && heuristic) scorers.set(definition.id, heuristicScorer(heuristic, definition));
    else if (definition.scorerKind === 'LLM_JUDGE' && judge) scorers.set(definition.id, judgeScorer(judge, definition));
  }
  return scorers;
}

/**
 * Stops fetching while any judge endpoint is throttled (429, Retry-After) or its circuit is open,
 * and resumes when all can take calls again: a provider outage slows consumption instead of
 * burning retries into the DLT. Work already in flight keeps waiting and probes the endpoint.
 */
export function pauseOnJudgePressure(judge: Judge, consumer: Pick<KeyParallelConsumer, 'hold' | 'release'>): void {
  const update = () => (judge.pressure().pause ? consumer.hold() : consumer.release());
  for (const event of ['judge:circuitOpened', 'judge:circuitHalfOpen', 'judge:circuitClosed', 'judge:throttled', 'judge:unthrottled'] as const)
    judge.events.on(event, update);
}

/**
 * Which scorer errors are provider back-pressure (not charged to the evaluation's retry budget):
 * the judge's own pressure codes, and any retryable failure that leaves an endpoint throttled or
 * its circuit open — such as the failures that open it, or a half-open probe that fails.
 */
export function judgePressureClassifier(judge: Judge): (error: unknown) => boolean {
  return (error) => isProviderPressure(error) || (isRetryable(error) && judge.pressure().pause);
}
