// The events evalbox publishes (the CloudEvents `data`, i.e. the Kafka value). Their JSON Schemas
// live in ./events/ as JSON documents: ajv validates with them, the TypeScript types below are
// generated from them (event-types.generated.ts), the OpenAPI document shows them,
// each event names its schema in `dataschema`, and test/schema-compat.test.ts checks each against
// its last released version. Adding an optional field keeps old consumers working, so the
// schemas allow additional properties.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Selectable } from 'kysely';
import type { ScoresTable, ScoreSource, ScoreStatus } from '../db/types.js';

export const EVENT_SCHEMA_VERSION = 1;

// The data types are generated from the schemas (scripts/generate-event-types.ts).
import type {
  ClientScore,
  EvaluationClientScoredData,
  EvaluationCreatedData,
  EvaluationDeletedData,
  EvaluationScoredData,
  ScoreResult,
} from './event-types.generated.js';
export type { ClientScore, EvaluationClientScoredData, EvaluationCreatedData, EvaluationDeletedData, EvaluationScoredData, ScoreResult };

/** A score as API responses show it: any status (PENDING included) and any source. */
export type ScoreView = Omit<ScoreResult, 'status' | 'source'> & { status: ScoreStatus; source: ScoreSource };

/** Whether a score may appear in an evaluation.scored event: terminal, and scored by evalbox. */
export const isTerminalScore = (score: ScoreView): score is ScoreView & ScoreResult =>
  score.status !== 'PENDING' && (score.source === 'LLM_JUDGE' || score.source === 'HEURISTIC');

/** Whether a score may appear in an evaluation.client_scored event: COMPLETED, recorded through the API. */
export const isClientScore = (score: ScoreView): score is ScoreView & ClientScore =>
  score.status === 'COMPLETED' && (score.source === 'HUMAN' || score.source === 'CLIENT');

/** A stored score row as it appears in events and API responses. */
export function toScoreResult(
  row: Pick<
    Selectable<ScoresTable>,
    'dimension' | 'status' | 'value' | 'label' | 'direction' | 'reasoning' | 'source' | 'scorer_name' | 'scorer_version' | 'error_code'
  >,
): ScoreView {
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

/** The folder of event schemas: `<type>.json` is the current schema, `released/<type>.v<N>.json` each released version. */
export const EVENT_SCHEMA_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'events');

export interface EventSchema {
  $id: string;
  title: string;
  version: number;
  [keyword: string]: unknown;
}

export function readEventSchema(file: string): EventSchema {
  return JSON.parse(fs.readFileSync(path.join(EVENT_SCHEMA_DIR, file), 'utf8')) as EventSchema;
}

/** The current schema of each event type: what ajv validates, what the OpenAPI document shows. */
export const evaluationCreatedSchema = readEventSchema('evaluation.created.json');
export const evaluationScoredSchema = readEventSchema('evaluation.scored.json');
export const evaluationClientScoredSchema = readEventSchema('evaluation.client_scored.json');
export const evaluationDeletedSchema = readEventSchema('evaluation.deleted.json');

const SCHEMAS_BY_TYPE: Record<string, EventSchema> = {
  [evaluationCreatedSchema.title]: evaluationCreatedSchema,
  [evaluationScoredSchema.title]: evaluationScoredSchema,
  [evaluationClientScoredSchema.title]: evaluationClientScoredSchema,
  [evaluationDeletedSchema.title]: evaluationDeletedSchema,
};

/** The CloudEvents `dataschema` of an event type: the $id of its current schema. */
export function dataSchemaOf(type: string): string | undefined {
  return SCHEMAS_BY_TYPE[type]?.$id;
}
