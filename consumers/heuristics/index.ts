// The offline heuristic scorers, keyed by dimension id. Deterministic (no clock, no randomness)
// and versioned: names and versions come from the dimensions registry, the one source of truth.
import { HEURISTIC_DIMENSIONS } from '../../src/dimensions.js';
import { scoreAnswerRelevance } from './answer-relevance.js';
import { scoreGroundedness } from './groundedness.js';
import { scoreJsonValidity } from './json-validity.js';
import { scoreLengthBand } from './length-band.js';
import { scorePiiLeak } from './pii.js';
import { scoreToxicity } from './toxicity.js';
import type { HeuristicOutcome, HeuristicScorer, ScoringInput } from './types.js';

export type { HeuristicOutcome, HeuristicScorer, ScoringInput } from './types.js';

const IMPLEMENTATIONS: Record<string, (input: ScoringInput) => HeuristicOutcome> = {
  groundedness: scoreGroundedness,
  answer_relevance: scoreAnswerRelevance,
  pii_leak: scorePiiLeak,
  toxicity: scoreToxicity,
  json_validity: scoreJsonValidity,
  length_band: scoreLengthBand,
};

export const HEURISTIC_SCORERS: ReadonlyMap<string, HeuristicScorer> = new Map(
  HEURISTIC_DIMENSIONS.map((d) => {
    const implementation = IMPLEMENTATIONS[d.id];
    if (!implementation) throw new Error(`no heuristic scorer implements the registered dimension "${d.id}"`);
    return [d.id, { dimension: d.id, name: d.scorerName, version: d.scorerVersion, score: implementation }];
  }),
);
