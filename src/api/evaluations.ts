// The API's write: the one-statement ingest (evaluation row + outbox event). Reads are in queries.ts.
import { CompiledQuery } from 'kysely';
import type { QueryConfig, QueryResult, QueryResultRow } from 'pg';
import type { Db } from '../db/index.js';
import type { EvaluationStatus } from '../db/types.js';
import { EVENT_TYPES, encodeEventPayload, type OutboxEvent } from '../events.js';
import { uuidv7 } from '../ids.js';
import { EVENT_SCHEMA_VERSION, type EvaluationCreatedData } from '../schemas/events.js';
import type { EvaluationRequest } from '../schemas/evaluation-request.js';

export const EVENT_SOURCE = '/evalbox/api';

export interface Queryable {
  query<R extends QueryResultRow>(config: QueryConfig): Promise<QueryResult<R>>;
}

const INGEST_SQL = `
  WITH evaluation AS (
    INSERT INTO evaluations (id, application_id, model_id, prompt, response, context, reference, metadata, dimensions, idempotency_key, created_at)
    VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8::jsonb, $9::text[], $10, $11)
    ON CONFLICT (application_id, idempotency_key) DO NOTHING
    RETURNING id
  ), event AS (
    INSERT INTO outbox (id, shard, topic, key, type, source, headers, payload, created_at)
    SELECT $12, outbox_shard_of($2), $13, $2, $14, $15, $16::jsonb, $17::jsonb, $11
    FROM evaluation
  )
  SELECT id FROM evaluation`;

export interface IngestInput {
  applicationId: string;
  request: EvaluationRequest;
  dimensions: string[];
  idempotencyKey: string | undefined;
  traceparent: string | undefined;
  eventsTopic: string;
  now: Date;
}

export interface IngestResult {
  evaluationId: string;
  status: EvaluationStatus;
  dimensions: string[];
  /** True when an earlier request with the same idempotency key created the evaluation. */
  replayed: boolean;
}

/**
 * Writes the evaluation row and its evaluation.created outbox row in ONE statement: a
 * data-modifying CTE is atomic (one implicit transaction) and costs one round trip instead of
 * four (BEGIN, two INSERTs, COMMIT). On an idempotency-key conflict nothing is inserted, the
 * outbox insert sees no row, and the existing evaluation is returned instead.
 */
export async function ingestEvaluation(db: Db, pool: Queryable | undefined, input: IngestInput): Promise<IngestResult> {
  const { request, applicationId } = input;
  const evaluationId = uuidv7(input.now.getTime());
  const data: EvaluationCreatedData = {
    schemaVersion: EVENT_SCHEMA_VERSION,
    evaluationId,
    applicationId,
    modelId: request.modelId ?? null,
    prompt: request.prompt,
    response: request.response,
    context: request.context ?? null,
    reference: request.reference ?? null,
    metadata: request.metadata ?? {},
    dimensions: input.dimensions,
    createdAt: input.now.toISOString(),
  };
  const event: OutboxEvent = {
    topic: input.eventsTopic,
    key: applicationId,
    type: EVENT_TYPES.evaluationCreated,
    source: EVENT_SOURCE,
    data,
    headers: input.traceparent ? { traceparent: input.traceparent } : {},
  };
  const payload = encodeEventPayload(event);
  const values = [
    evaluationId,
    applicationId,
    data.modelId,
    data.prompt,
    data.response,
    data.context === null ? null : JSON.stringify(data.context),
    data.reference,
    JSON.stringify(data.metadata),
    input.dimensions,
    input.idempotencyKey ?? null,
    input.now,
    uuidv7(input.now.getTime()),
    event.topic,
    event.type,
    event.source,
    JSON.stringify(event.headers),
    payload,
  ];
  // With the pool at hand, a named statement: Postgres parses and plans it once per connection
  // (like pgbench -M prepared), which kysely cannot express. Without it, the same SQL unnamed.
  const inserted = pool
    ? await pool.query<{ id: string }>({ name: 'evalbox_ingest_evaluation', text: INGEST_SQL, values })
    : await db.executeQuery<{ id: string }>(CompiledQuery.raw(INGEST_SQL, values));
  if (inserted.rows.length === 1) {
    return { evaluationId, status: 'PENDING', dimensions: input.dimensions, replayed: false };
  }
  // The conflicting insert has committed (ON CONFLICT waited for it), so a new statement sees it.
  const existing = await db
    .selectFrom('evaluations')
    .select(['id', 'status', 'dimensions'])
    .where('application_id', '=', applicationId)
    .where('idempotency_key', '=', input.idempotencyKey ?? '')
    .executeTakeFirstOrThrow();
  return { evaluationId: existing.id, status: existing.status, dimensions: existing.dimensions, replayed: true };
}
