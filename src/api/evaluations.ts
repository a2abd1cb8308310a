// The API's write: the ingest of evaluations, their rows and their outbox events in one statement,
// for one request or a whole group of them (group commit). Reads are in queries.ts.
import { hash } from 'node:crypto';
import { CompiledQuery } from 'kysely';
import type { QueryConfig, QueryResult, QueryResultRow } from 'pg';
import type { Db } from '../db/index.js';
import type { EvaluationStatus } from '../db/types.js';
import { RetryableError } from '../errors.js';
import { EVENT_TYPES, encodeOutboxRow, insertOutboxSql, outboxRowParameters, outboxRowsFrom, type OutboxRowValues } from '../events.js';
import { uuidv7 } from '../ids.js';
import type { OutboxNudger } from '../outbox-wakeup.js';
import { EVENT_SCHEMA_VERSION, type EvaluationCreatedData } from '../schemas/events.js';
import type { EvaluationRequest } from '../schemas/evaluation-request.js';
import { createGroupCommitter, type GroupCommitSettings } from './group-commit.js';
import { ProblemError } from './problem.js';

export const EVENT_SOURCE = '/evalbox/api';

export interface Queryable {
  query<R extends QueryResultRow>(config: QueryConfig): Promise<QueryResult<R>>;
}

// Every row of a group in one statement: the evaluations from parallel arrays (unnest keeps the
// request order in `ord`), ON CONFLICT DO NOTHING for any key already taken (an earlier request,
// or an earlier row of the same group), and the outbox rows of exactly the evaluations inserted,
// in request order. A data-modifying statement is atomic: all of it commits or none.
// The evaluation.created payload is built here from the row's own inputs instead of being bound as
// text: bound, it doubled the statement's bytes (prompt, response and context twice) and Postgres
// parsed that text twice (as an array element, then as jsonb); measured, about a tenth of the
// ingest rate. (Context and metadata, small, are still cast to jsonb twice: column and payload.)
// jsonb keeps no key order or spacing, so the stored payload (and the Kafka value the relay
// sends) is the JSON text prepareEvaluation built for the size check, cast; a test compares them.
const EVALUATION_CREATED_PAYLOAD = `jsonb_build_object(
      'schemaVersion', ${EVENT_SCHEMA_VERSION}, 'evaluationId', input.id, 'applicationId', input.application_id, 'modelId', input.model_id,
      'prompt', input.prompt, 'response', input.response, 'context', input.context::jsonb, 'reference', input.reference,
      'metadata', input.metadata::jsonb, 'dimensions', input.dimensions::text[], 'createdAt', input.created_at) || input.rich_input::jsonb`;
const INGEST_SQL = `
  WITH input AS (
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[],
                         $10::text[], $11::text[], $12::text[], $13::text[],
                         $14::text[], $15::text[], $16::text[], $17::text[], $18::int[], $19::int[], $20::float8[], $21::numeric[], $29::text[]) WITH ORDINALITY
      AS input(id, application_id, model_id, prompt, response, context, reference, metadata, dimensions,
               idempotency_key, external_id, fingerprint, created_at,
               messages, tags, session_id, user_id, call_input_tokens, call_output_tokens, call_latency_ms, call_cost_usd, rich_input, ord)
  ), evaluation AS (
    INSERT INTO evaluations (id, application_id, model_id, prompt, response, context, reference, metadata, dimensions,
                             idempotency_key, external_id, request_fingerprint, created_at,
                             messages, tags, session_id, user_id, call_input_tokens, call_output_tokens, call_latency_ms, call_cost_usd)
    SELECT id, application_id, model_id, prompt, response, context::jsonb, reference, metadata::jsonb, dimensions::text[],
           idempotency_key, external_id, decode(fingerprint, 'hex'), created_at::timestamptz,
           messages::jsonb, tags::text[], session_id, user_id, call_input_tokens, call_output_tokens, call_latency_ms, call_cost_usd
    FROM input ORDER BY ord
    ON CONFLICT DO NOTHING
    RETURNING id
  ), published AS (
    ${insertOutboxSql(
      `${outboxRowsFrom(22, 'event', { withPayload: false })} JOIN input ON input.ord = event.ord JOIN evaluation ON evaluation.id = input.id`,
      'event',
      EVALUATION_CREATED_PAYLOAD,
    )}
  )
  SELECT (SELECT array_agg(id::text) FROM evaluation) AS inserted, (SELECT array_agg(DISTINCT shard) FROM published) AS shards`;

// The evaluations that hold the keys of rows that were not inserted. Served by the unique indexes
// on (application_id, idempotency_key) and (application_id, external_id).
const CONFLICTS_SQL = `
  SELECT k.ord, e.id, e.status, e.dimensions, encode(e.request_fingerprint, 'hex') AS fingerprint,
         e.idempotency_key IS NOT DISTINCT FROM k.idempotency_key AS by_key,
         e.created_at < now() - make_interval(secs => $4) AS key_expired
  FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS k(application_id, idempotency_key, external_id, ord)
  JOIN evaluations e ON e.application_id = k.application_id AND (e.idempotency_key = k.idempotency_key OR e.external_id = k.external_id)`;

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
  /** True when an earlier request with the same idempotency key (or externalId) created the evaluation. */
  replayed: boolean;
}

export type IngestOutcome = { ok: true; result: IngestResult } | { ok: false; error: unknown };

/** One request's rows, built before it queues: an event Kafka would refuse fails its request alone, at once. */
export interface PreparedEvaluation {
  input: IngestInput;
  evaluationId: string;
  externalId: string | null;
  /** The optional input fields of evaluation.created as JSON text ("{}" for none): the statement builds the rest. */
  richInput: string;
  /**
   * sha256 (hex) of the request body in canonical form: a replay must carry the same body. Only a
   * request with an Idempotency-Key or an externalId can be replayed; others store none.
   */
  fingerprint: string | null;
  event: OutboxRowValues;
}

export function prepareEvaluation(input: IngestInput): PreparedEvaluation {
  const { request, applicationId } = input;
  const evaluationId = uuidv7(input.now.getTime());
  const richInput = richInputOf(request);
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
    ...richInput,
  };
  const event = encodeOutboxRow(
    {
      topic: input.eventsTopic,
      key: applicationId,
      type: EVENT_TYPES.evaluationCreated,
      source: EVENT_SOURCE,
      data,
      headers: input.traceparent ? { traceparent: input.traceparent } : {},
    },
    input.now,
  );
  return {
    input,
    evaluationId,
    externalId: request.externalId ?? null,
    richInput: JSON.stringify(richInput),
    fingerprint: input.idempotencyKey === undefined && request.externalId === undefined ? null : hash('sha256', canonicalJson(request), 'hex'),
    event,
  };
}

export interface IngestWriterContext {
  db: Db;
  /** The pool behind `db`: a named prepared statement, parsed and planned once per connection. */
  pool?: Queryable;
  nudger: OutboxNudger;
  groupCommit: GroupCommitSettings;
  /** How long an Idempotency-Key is honoured; after that it may create a new evaluation. */
  idempotencyTtlMs: number;
  /** Metrics of the ingest writes. */
  observer?: IngestObserver;
}

/** What an operator sees of the ingest writes (metrics); calls must not throw. */
export interface IngestObserver {
  /** A request (or the valid items of a batch) waited this long for its group to start writing. */
  waited(seconds: number): void;
  /** One ingest statement of `rows` rows ended: committed, or refused/failed (nothing written). */
  statement(rows: number, seconds: number, outcome: 'committed' | 'failed'): void;
}

export interface IngestWriter {
  /** Writes one request's evaluations (several for a batch) in order; settles after the commit. */
  write(unit: PreparedEvaluation[]): Promise<IngestOutcome[]>;
}

export function createIngestWriter(ctx: IngestWriterContext): IngestWriter {
  const run = async <R extends QueryResultRow>(name: string, text: string, values: unknown[]): Promise<R[]> =>
    ctx.pool ? (await ctx.pool.query<R>({ name, text, values })).rows : (await ctx.db.executeQuery<R>(CompiledQuery.raw(text, values))).rows;

  async function insert(rows: PreparedEvaluation[]): Promise<{ inserted: Set<string>; shards: number[] }> {
    const values = [
      rows.map((r) => r.evaluationId),
      rows.map((r) => r.input.applicationId),
      rows.map((r) => r.input.request.modelId ?? null),
      rows.map((r) => r.input.request.prompt),
      rows.map((r) => r.input.request.response),
      rows.map((r) => (r.input.request.context === undefined ? null : JSON.stringify(r.input.request.context))),
      rows.map((r) => r.input.request.reference ?? null),
      rows.map((r) => JSON.stringify(r.input.request.metadata ?? {})),
      rows.map((r) => textArrayLiteral(r.input.dimensions)),
      rows.map((r) => r.input.idempotencyKey ?? null),
      rows.map((r) => r.externalId),
      rows.map((r) => r.fingerprint),
      rows.map((r) => r.input.now.toISOString()),
      rows.map((r) => (r.input.request.messages === undefined ? null : JSON.stringify(r.input.request.messages))),
      rows.map((r) => (r.input.request.tags === undefined ? null : textArrayLiteral(r.input.request.tags))),
      rows.map((r) => r.input.request.sessionId ?? null),
      rows.map((r) => r.input.request.userId ?? null),
      rows.map((r) => r.input.request.usage?.inputTokens ?? null),
      rows.map((r) => r.input.request.usage?.outputTokens ?? null),
      rows.map((r) => r.input.request.latencyMs ?? null),
      rows.map((r) => r.input.request.costUsd ?? null),
      ...outboxRowParameters(
        rows.map((r) => r.event),
        { withPayload: false },
      ),
      rows.map((r) => r.richInput),
    ];
    const started = performance.now();
    let outcome: 'committed' | 'failed' = 'failed';
    try {
      const [result] = await run<{ inserted: string[] | null; shards: number[] | null }>('evalbox_ingest_evaluations', INGEST_SQL, values);
      outcome = 'committed';
      return { inserted: new Set(result?.inserted ?? []), shards: result?.shards ?? [] };
    } finally {
      try {
        ctx.observer?.statement(rows.length, (performance.now() - started) / 1000, outcome);
      } catch {
        // a metric never fails a write
      }
    }
  }

  /** Writes a group; a statement the database refused is retried row by row, so one bad row fails alone. */
  async function writeRows(rows: PreparedEvaluation[], retryConflicts = true): Promise<IngestOutcome[]> {
    let written: { inserted: Set<string>; shards: number[] };
    try {
      written = await insert(rows);
    } catch (error) {
      if (rows.length > 1 && rolledBack(error)) {
        const outcomes: IngestOutcome[] = [];
        for (const row of rows) outcomes.push(...(await writeRows([row], retryConflicts)));
        return outcomes;
      }
      // Refused for this row alone, or an outcome nobody can know (the connection died around the
      // commit): fail every member; nothing is acknowledged that may not have been committed.
      return rows.map(() => ({ ok: false, error }));
    }
    if (written.shards.length > 0) ctx.nudger.nudge(written.shards);
    const outcomes: (IngestOutcome | undefined)[] = rows.map((row) =>
      written.inserted.has(row.evaluationId)
        ? { ok: true, result: { evaluationId: row.evaluationId, status: 'PENDING', dimensions: row.input.dimensions, replayed: false } }
        : undefined,
    );
    const conflicted = rows.map((row, i) => ({ row, i })).filter(({ i }) => outcomes[i] === undefined);
    if (conflicted.length > 0) {
      const resolved = await resolveConflicts(
        conflicted.map((c) => c.row),
        retryConflicts,
      );
      conflicted.forEach(({ i }, j) => (outcomes[i] = resolved[j]));
    }
    return outcomes as IngestOutcome[];
  }

  /**
   * A row that was not inserted met a key already taken: by a committed evaluation (ON CONFLICT
   * waited for any concurrent writer to finish), possibly one inserted by an earlier row of the
   * same group. Same key, same body: a replay. Same key, another body: refused.
   */
  async function resolveConflicts(rows: PreparedEvaluation[], retry: boolean): Promise<IngestOutcome[]> {
    const found = await run<{
      ord: string;
      id: string;
      status: EvaluationStatus;
      dimensions: string[];
      fingerprint: string | null;
      by_key: boolean;
      key_expired: boolean;
    }>('evalbox_ingest_conflicts', CONFLICTS_SQL, [
      rows.map((r) => r.input.applicationId),
      rows.map((r) => r.input.idempotencyKey ?? null),
      rows.map((r) => r.externalId),
      ctx.idempotencyTtlMs / 1000,
    ]);
    const outcomes: IngestOutcome[] = [];
    for (const [index, row] of rows.entries()) {
      const matches = found.filter((f) => Number(f.ord) === index + 1);
      const byKey = row.input.idempotencyKey === undefined ? undefined : matches.find((m) => m.by_key);
      const existing = byKey ?? matches[0];
      const replay = (): IngestOutcome => ({
        ok: true,
        result: {
          evaluationId: (existing as (typeof found)[number]).id,
          status: (existing as (typeof found)[number]).status,
          dimensions: (existing as (typeof found)[number]).dimensions,
          replayed: true,
        },
      });
      if (byKey?.key_expired && retry) {
        // Past the retention window the key is free again: release it and write the row anew.
        await run('evalbox_ingest_release_key', 'UPDATE evaluations SET idempotency_key = NULL WHERE id = $1', [byKey.id]);
        outcomes.push(...(await writeRows([row], false)));
      } else if (!existing) {
        // The holder of the key is gone (deleted meanwhile): write the row once more.
        outcomes.push(
          ...(retry
            ? await writeRows([row], false)
            : [{ ok: false as const, error: new RetryableError('the idempotency key is in use by a concurrent request', { code: 'IDEMPOTENCY_CONFLICT' }) }]),
        );
      } else if (existing.fingerprint === null || existing.fingerprint === row.fingerprint) {
        outcomes.push(replay());
      } else if (byKey) {
        outcomes.push({
          ok: false,
          error: new ProblemError(422, `the Idempotency-Key was already used with a different request body (evaluation ${existing.id})`, {
            errors: [{ pointer: 'header:Idempotency-Key', detail: 'reused with a different body; use a new key for a new request' }],
          }),
        });
      } else {
        outcomes.push({
          ok: false,
          error: new ProblemError(409, `externalId "${row.externalId}" already names evaluation ${existing.id}, created from a different body`, {
            errors: [{ pointer: '/externalId', detail: 'already used by another evaluation of this application' }],
          }),
        });
      }
    }
    return outcomes;
  }

  return { write: createGroupCommitter(writeRows, ctx.groupCommit, ctx.observer && ((seconds) => ctx.observer?.waited(seconds))) };
}

/**
 * Whether a failed statement certainly changed nothing: the server refused it with a SQLSTATE.
 * A lost connection (no SQLSTATE, class 08) or a terminated backend (57P01..57P03) may have
 * died right after the commit, so its outcome is unknown and it is never retried here.
 */
function rolledBack(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code !== 'string' || !/^[0-9A-Z]{5}$/.test(code)) return false;
  return !code.startsWith('08') && !code.startsWith('57P');
}

/** A Postgres text[] literal: every element quoted, quotes and backslashes escaped. */
function textArrayLiteral(items: readonly string[]): string {
  return `{${items.map((item) => `"${item.replace(/["\\]/g, '\\$&')}"`).join(',')}}`;
}

/** JSON with object keys sorted at every level: the same request always gives the same text. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.keys(value)
      .sort()
      .filter((key) => (value as Record<string, unknown>)[key] !== undefined)
      .map((key) => `${JSON.stringify(key)}:${canonicalJson((value as Record<string, unknown>)[key])}`);
    return `{${entries.join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

/** The optional input fields of a request, as evaluation.created carries them (absent when not sent). */
function richInputOf(request: EvaluationRequest): Partial<EvaluationCreatedData> {
  const { messages, tags, sessionId, userId, usage, latencyMs, costUsd } = request;
  return Object.fromEntries(Object.entries({ messages, tags, sessionId, userId, usage, latencyMs, costUsd }).filter(([, value]) => value !== undefined));
}
