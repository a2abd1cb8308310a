// JSON Schemas of the events evalbox publishes (the CloudEvents `data`, i.e. the Kafka value).
// Each carries a schemaVersion; adding an optional field keeps old consumers working, so the
// schemas allow additional properties.
import type { EvaluationStatus, ScoresTable, ScoreStatus } from '../db/types.js';
import type { Selectable } from 'kysely';

export const EVENT_SCHEMA_VERSION = 1;

export interface EvaluationCreatedData {
  schemaVersion: number;
  evaluationId: string;
  applicationId: string;
  modelId: string | null;
  prompt: string;
  response: string;
  context: string | string[] | null;
  reference: string | null;
  metadata: Record<string, unknown>;
  dimensions: string[];
  createdAt: string;
}

export interface ScoreResult {
  dimension: string;
  status: ScoreStatus;
  value: number | null;
  label: string | null;
  direction: 'higher_is_better' | 'lower_is_better' | null;
  reasoning: string | null;
  source: 'LLM_JUDGE' | 'HEURISTIC';
  scorerName: string;
  scorerVersion: string;
  errorCode: string | null;
}

/** A stored score row as it appears in events and API responses. */
export function toScoreResult(
  row: Pick<
    Selectable<ScoresTable>,
    'dimension' | 'status' | 'value' | 'label' | 'direction' | 'reasoning' | 'source' | 'scorer_name' | 'scorer_version' | 'error_code'
  >,
): ScoreResult {
  return {
    dimension: row.dimension,
    status: row.status,
    value: row.value,
    label: row.label,
    direction: row.direction,
    reasoning: row.reasoning,
    source: row.source,
    scorerName: row.scorer_name,
    scorerVersion: row.scorer_version,
    errorCode: row.error_code,
  };
}

export interface EvaluationScoredData {
  schemaVersion: number;
  evaluationId: string;
  applicationId: string;
  status: Exclude<EvaluationStatus, 'PENDING'>;
  scores: ScoreResult[];
  scoredAt: string;
}

const nullableString = { type: ['string', 'null'] } as const;

export const evaluationCreatedSchema = {
  $id: 'https://evalbox.dev/schemas/events/evaluation.created.json',
  title: 'evaluation.created',
  type: 'object',
  required: ['schemaVersion', 'evaluationId', 'applicationId', 'prompt', 'response', 'dimensions', 'createdAt'],
  properties: {
    schemaVersion: { type: 'integer', minimum: 1 },
    evaluationId: { type: 'string', format: 'uuid' },
    applicationId: { type: 'string', minLength: 1 },
    modelId: nullableString,
    prompt: { type: 'string' },
    response: { type: 'string' },
    context: { anyOf: [{ type: 'string' }, { type: 'array', items: { type: 'string' } }, { type: 'null' }] },
    reference: nullableString,
    metadata: { type: 'object' },
    dimensions: { type: 'array', items: { type: 'string' }, minItems: 1 },
    createdAt: { type: 'string', format: 'date-time' },
  },
  additionalProperties: true,
} as const;

export const evaluationScoredSchema = {
  $id: 'https://evalbox.dev/schemas/events/evaluation.scored.json',
  title: 'evaluation.scored',
  type: 'object',
  required: ['schemaVersion', 'evaluationId', 'applicationId', 'status', 'scores', 'scoredAt'],
  properties: {
    schemaVersion: { type: 'integer', minimum: 1 },
    evaluationId: { type: 'string', format: 'uuid' },
    applicationId: { type: 'string' },
    status: { enum: ['SCORED', 'PARTIALLY_SCORED', 'SCORING_FAILED'] },
    scores: {
      type: 'array',
      items: {
        type: 'object',
        required: ['dimension', 'status'],
        properties: {
          dimension: { type: 'string' },
          status: { enum: ['COMPLETED', 'SKIPPED', 'ERROR'] },
          value: { type: ['number', 'null'], minimum: 0, maximum: 1 },
          label: nullableString,
          direction: { enum: ['higher_is_better', 'lower_is_better', null] },
          reasoning: nullableString,
          source: { enum: ['LLM_JUDGE', 'HEURISTIC'] },
          scorerName: { type: 'string' },
          scorerVersion: { type: 'string' },
          errorCode: nullableString,
        },
        additionalProperties: true,
      },
    },
    scoredAt: { type: 'string', format: 'date-time' },
  },
  additionalProperties: true,
} as const;
