// The events evalbox publishes (the CloudEvents `data`, i.e. the Kafka value). Their JSON Schemas
// live in ./events/ as JSON documents: ajv validates with them, the OpenAPI document shows them,
// each event names its schema in `dataschema`, and test/schema-compat.test.ts checks each against
// its last released version. Adding an optional field keeps old consumers working, so the
// schemas allow additional properties.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Selectable } from 'kysely';
import type { EvaluationStatus, ScoresTable, ScoreSource, ScoreStatus } from '../db/types.js';

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
  // Optional: present when the request had them.
  messages?: unknown[];
  tags?: string[];
  sessionId?: string;
  userId?: string;
  usage?: { inputTokens?: number; outputTokens?: number };
  latencyMs?: number;
  costUsd?: number;
}

export interface ScoreResult {
  dimension: string;
  status: ScoreStatus;
  value: number | null;
  label: string | null;
  direction: 'higher_is_better' | 'lower_is_better' | null;
  reasoning: string | null;
  /** evaluation.scored carries only evalbox's own (LLM_JUDGE, HEURISTIC); the API shows them all. */
  source: ScoreSource;
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

/** Scores recorded through the API (source HUMAN or CLIENT); on the results topic. */
export interface EvaluationClientScoredData {
  schemaVersion: number;
  evaluationId: string;
  applicationId: string;
  scores: ScoreResult[];
  recordedAt: string;
}

/** An evaluation deleted through the API; on both topics, so a consumer of either learns of it. */
export interface EvaluationDeletedData {
  schemaVersion: number;
  evaluationId: string;
  applicationId: string;
  deletedAt: string;
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
