// The contract between the heuristic scorers and the scoring consumer.
export interface ScoringInput {
  prompt: string;
  response: string;
  context?: string | string[] | null;
  reference?: string | null;
  metadata?: Record<string, unknown>;
}

export type HeuristicOutcome =
  | {
      status: 'COMPLETED';
      value: number;
      rawValue: number | null;
      label: string;
      reasoning: string;
      /** How sure the scorer is of its verdict, in [0, 1]: the cascade sends the unsure ones to the judge. */
      confidence: number;
    }
  | { status: 'SKIPPED'; label: 'skipped'; reasoning: string };

export interface HeuristicScorer {
  dimension: string;
  name: string;
  version: string;
  score(input: ScoringInput): HeuristicOutcome;
}

export const skipped = (reasoning: string): HeuristicOutcome => ({ status: 'SKIPPED', label: 'skipped', reasoning });
