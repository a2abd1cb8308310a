// The dimensions registry: what evalbox can score, and how. Served at GET /v1/dimensions; the
// `dimensions` of an ingest request select from it (an unknown id is a 400).
export type ScorerKind = 'HEURISTIC' | 'LLM_JUDGE';
export type Direction = 'higher_is_better' | 'lower_is_better';
export type ScoringInput = 'prompt' | 'response' | 'context' | 'reference';

export interface DimensionDefinition {
  id: string;
  name: string;
  description: string;
  /** Every value is normalised to [0, 1]. */
  scale: { min: 0; max: 1 };
  direction: Direction;
  /** Inputs without which the dimension is SKIPPED with a reason. */
  requiredInputs: ScoringInput[];
  scorerKind: ScorerKind;
  scorerName: string;
  scorerVersion: string;
  /** Fraction of evaluations scored on this dimension (1 = all). */
  samplingRate: number;
}

const heuristic = (d: Omit<DimensionDefinition, 'scale' | 'scorerKind' | 'samplingRate'>): DimensionDefinition => ({
  ...d,
  scale: { min: 0, max: 1 },
  scorerKind: 'HEURISTIC',
  samplingRate: 1,
});

export const HEURISTIC_DIMENSIONS: DimensionDefinition[] = [
  heuristic({ id: 'groundedness', name: 'Groundedness', description: 'Share of response sentences supported by the context.', direction: 'higher_is_better', requiredInputs: ['response', 'context'], scorerName: 'heuristic-groundedness', scorerVersion: '1' }),
  heuristic({ id: 'answer_relevance', name: 'Answer relevance', description: 'Coverage of the prompt’s key terms by the response, zero for a refusal.', direction: 'higher_is_better', requiredInputs: ['prompt', 'response'], scorerName: 'heuristic-answer-relevance', scorerVersion: '1' }),
  heuristic({ id: 'pii_leak', name: 'PII leak', description: 'Personal data or secrets in the response: emails, phones, card numbers, IBANs, keys.', direction: 'lower_is_better', requiredInputs: ['response'], scorerName: 'heuristic-pii', scorerVersion: '1' }),
  heuristic({ id: 'toxicity', name: 'Toxicity', description: 'Profanity and abuse in the response, obfuscations included.', direction: 'lower_is_better', requiredInputs: ['response'], scorerName: 'heuristic-toxicity', scorerVersion: '1' }),
  heuristic({ id: 'json_validity', name: 'JSON validity', description: 'Whether the response is valid JSON when the prompt asks for JSON.', direction: 'higher_is_better', requiredInputs: ['prompt', 'response'], scorerName: 'heuristic-json', scorerVersion: '1' }),
  heuristic({ id: 'length_band', name: 'Length band', description: 'Whether the response length sits in a sensible band for the prompt.', direction: 'higher_is_better', requiredInputs: ['prompt', 'response'], scorerName: 'heuristic-length', scorerVersion: '1' }),
];

/** Scored when a request names no dimensions. */
export const DEFAULT_DIMENSION_IDS = ['groundedness', 'answer_relevance', 'pii_leak', 'toxicity'];

export interface DimensionRegistry {
  list(): DimensionDefinition[];
  get(id: string): DimensionDefinition | undefined;
  defaults: string[];
}

export function createDimensionRegistry(extra: DimensionDefinition[] = [], defaults: string[] = DEFAULT_DIMENSION_IDS): DimensionRegistry {
  const byId = new Map<string, DimensionDefinition>();
  for (const d of [...HEURISTIC_DIMENSIONS, ...extra]) byId.set(d.id, d);
  for (const id of defaults) if (!byId.has(id)) throw new Error(`default dimension "${id}" is not registered`);
  return { list: () => [...byId.values()], get: (id) => byId.get(id), defaults: [...defaults] };
}
