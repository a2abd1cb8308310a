// The API's routes: each handler reads and checks its input, calls one database function, and
// maps the result with responses.ts. Errors are thrown and mapped in one place (error-mapping.ts).
import type { Context, Hono } from 'hono';
import type { Config } from '../config.js';
import type { Db } from '../db/index.js';
import type { EvaluationStatus } from '../db/types.js';
import { dimensionIdsIn, type DimensionRegistry } from '../dimensions.js';
import { ValidationError, type FieldError } from '../errors.js';
import type { Logger } from '../logging.js';
import type { OutboxNudger } from '../outbox-wakeup.js';
import { promptOfMessages, type ClientScoreInput, type EvaluationRequest } from '../schemas/evaluation-request.js';
import { MAX_FIELD_ERRORS, type BoundedValidator } from '../schemas/validator.js';
import type { CursorCodec } from './cursor.js';
import { databaseUnavailable, toProblem } from './error-mapping.js';
import { prepareEvaluation, type IngestOutcome, type IngestWriter, type PreparedEvaluation, type Queryable } from './evaluations.js';
import { tooManyRequests, type Limits } from './limits.js';
import { header, readBodyText } from './node-request.js';
import { ProblemError } from './problem.js';
import { findEvaluation, listEvaluationsPage, listScoredPage, SCORED_SINCE_MAX_WINDOW_MS } from './queries.js';
import { acceptedBody, dimensionsBody, evaluationBody, evaluationLink, pageBody, scoreBody } from './responses.js';
import { deleteEvaluation, recordClientScores } from './scores.js';
import { latestResultPosition, streamResults, type ResultStreams } from './results-stream.js';
import { activeTraceparent } from '../tracing.js';
import { unstorableFields } from './storable.js';

export type ApiEnv = { Variables: { applicationId: string; requestId: string; log: Logger } };

export interface RouteDeps {
  db: Db;
  pool: Queryable | undefined;
  config: Config;
  logger: Logger;
  dimensions: DimensionRegistry;
  clock: () => Date;
  validateRequest: BoundedValidator;
  validateBatch: BoundedValidator;
  openapi: unknown;
  routeLabel: (c: Context<ApiEnv>) => string;
  limits: Limits;
  /** Writes evaluations, grouping concurrent requests into one statement when configured. */
  writer: IngestWriter;
  /** Seals and opens the list cursors (opaque to clients). */
  cursors: CursorCodec;
  /** Wakes the relay after a commit that wrote outbox rows. */
  nudger: OutboxNudger;
  validateScores: BoundedValidator;
  /** The open results streams, bounded per application. */
  streams: ResultStreams;
  /** Aborted when the process stops: every results stream ends. */
  stopping: AbortSignal;
}

/** Field errors reported for a whole batch at most. */
const BATCH_ERROR_BUDGET = 5 * MAX_FIELD_ERRORS;

const STATUSES: EvaluationStatus[] = ['PENDING', 'SCORED', 'PARTIALLY_SCORED', 'SCORING_FAILED'];
const TRACEPARENT = /^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/;

/** The paths the API serves and the methods each allows (405 with Allow for the others). */
export const ALLOWED_METHODS: [string, string][] = [
  ['/v1/evaluations', 'GET, HEAD, POST'],
  ['/v1/evaluations:batch', 'POST'],
  ['/v1/evaluations:stream', 'GET, HEAD'],
  ['/v1/evaluations/:id', 'GET, HEAD, DELETE'],
  ['/v1/evaluations/:id/scores', 'POST'],
  ['/v1/dimensions', 'GET, HEAD'],
  ['/openapi.json', 'GET, HEAD'],
];

const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$/;

/** An RFC 3339 date-time (with its offset), or null: Date alone accepts "2024", "1" and RFC 2822. */
export function parseRfc3339(text: string): Date | null {
  if (!RFC3339.test(text)) return null;
  const date = new Date(text);
  return Number.isNaN(date.getTime()) ? null : date;
}

export function registerRoutes(app: Hono<ApiEnv>, deps: RouteDeps): void {
  const { db, config, logger, dimensions } = deps;

  // The connection is closed after a 413 rather than reading the rest of an oversized body.
  const tooLarge = () => new ProblemError(413, `the body exceeds ${config.api.bodyLimitBytes} bytes`, { headers: { connection: 'close' } });

  async function readJson(c: Context<ApiEnv>): Promise<unknown> {
    const type = (header(c, 'content-type') ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
    if (type !== 'application/json' && !/^application\/[\w.+-]+\+json$/.test(type)) {
      throw new ProblemError(415, 'send the body as application/json');
    }
    const text = await readBodyText(c, config.api.bodyLimitBytes, tooLarge);
    try {
      return JSON.parse(text);
    } catch (error) {
      throw new ProblemError(400, `the body is not valid JSON: ${(error as Error).message}`, { errors: [{ pointer: '/', detail: 'not valid JSON' }] });
    }
  }

  /** Validates one item against the schema, what Postgres can store, and the dimensions registry. */
  function toRequest(body: unknown): { request: EvaluationRequest; dimensions: string[] } {
    const validated = deps.validateRequest.assert<Omit<EvaluationRequest, 'prompt'> & { prompt?: string }>(body, 'the evaluation');
    const prompt = validated.prompt ?? promptOfMessages(validated.messages ?? []);
    if (prompt === undefined)
      throw new ValidationError('the evaluation has no prompt', [
        { pointer: '/messages', detail: 'without prompt, a user message with text content is needed' },
      ]);
    const request: EvaluationRequest = { ...validated, prompt };
    const unstorable = unstorableFields(request);
    if (unstorable.length > 0) throw new ValidationError('the evaluation holds values that cannot be stored', unstorable);
    const requested = request.dimensions ?? dimensions.defaults;
    const unknown: FieldError[] = dimensions.missing(requested).map(({ index, detail }) => ({ pointer: `/dimensions/${index}`, detail }));
    if (unknown.length > 0) throw new ValidationError('the evaluation names unknown dimensions', unknown);
    return { request, dimensions: requested };
  }

  /** Validates one item and builds the rows it will write (throws for the client's errors). */
  function prepare(c: Context<ApiEnv>, body: unknown, idempotencyKey: string | undefined): PreparedEvaluation {
    const { request, dimensions: requested } = toRequest(body);
    // The ingest span's context (tracing on), else the client's own valid traceparent, if any.
    const given = header(c, 'traceparent');
    const traceparent = activeTraceparent() ?? (given && TRACEPARENT.test(given) ? given : undefined);
    return prepareEvaluation({
      applicationId: c.get('applicationId'),
      request,
      dimensions: requested,
      idempotencyKey,
      traceparent,
      eventsTopic: config.topics.events,
      now: deps.clock(),
    });
  }

  /**
   * Writes one request's evaluations. Without group commit each request holds a connection, so it
   * takes one of its application's share of the pool; with it, a group holds one connection for
   * the requests of every application that arrived together, in arrival order.
   */
  function write(c: Context<ApiEnv>, unit: PreparedEvaluation[]): Promise<IngestOutcome[]> {
    if (config.api.groupCommit.enabled) return deps.writer.write(unit);
    return deps.limits.withConnection(c.get('applicationId'), () => deps.writer.write(unit));
  }

  function idempotencyKeyOf(c: Context<ApiEnv>): string | undefined {
    const key = header(c, 'idempotency-key');
    if (key !== undefined && (key.length === 0 || key.length > 200)) {
      throw new ProblemError(400, 'Idempotency-Key must be 1 to 200 characters', { errors: [{ pointer: 'header:Idempotency-Key', detail: 'length 1..200' }] });
    }
    return key;
  }

  app.get('/openapi.json', (c) => c.json(deps.openapi));
  app.get('/v1/dimensions', (c) => c.json(dimensionsBody(dimensions)));

  app.post('/v1/evaluations', async (c) => {
    const idempotencyKey = idempotencyKeyOf(c);
    const json = await readJson(c);
    await dimensions.lookFor(dimensionIdsIn(json)); // a scorer may have just published them
    const [outcome] = await write(c, [prepare(c, json, idempotencyKey)]);
    if (!outcome?.ok) throw outcome?.error;
    const { result } = outcome;
    if (logger.isLevelEnabled('debug'))
      c.get('log').debug({ evaluationId: result.evaluationId, applicationId: c.get('applicationId'), replayed: result.replayed }, 'evaluation accepted');
    if (result.replayed) c.header('idempotent-replayed', 'true');
    c.header('location', evaluationLink(result.evaluationId));
    return c.json(acceptedBody(result), 202);
  });

  app.post('/v1/evaluations:batch', async (c) => {
    const batchKey = idempotencyKeyOf(c);
    const body = deps.validateBatch.assert<{ items: unknown[] }>(await readJson(c), 'the batch');
    await dimensions.lookFor(body.items.slice(0, config.api.batchLimit).flatMap(dimensionIdsIn));
    if (body.items.length > config.api.batchLimit) {
      throw new ProblemError(400, `a batch holds at most ${config.api.batchLimit} items`, {
        errors: [{ pointer: '/items', detail: `more than ${config.api.batchLimit} items` }],
      });
    }
    // One unit of the application's rate per item (the request itself paid for one).
    const decision = deps.limits.take(c.get('applicationId'), body.items.length - 1);
    if (!decision.allowed)
      throw tooManyRequests(`a batch of ${body.items.length} items is over this application's rate`, decision.retryAfterSeconds, decision.headers);
    // The valid items are written in request order by one statement (their events reach Kafka in
    // that order); an invalid item, or one the database refuses, gets its own result and does not
    // reject the others, so the client knows exactly which ones were committed. With an
    // Idempotency-Key, item i is idempotent under the key and its index (docs/api.md).
    // The field errors of all items together are bounded, like those of one request.
    let errorBudget = BATCH_ERROR_BUDGET;
    const failed = (index: number, error: unknown) => {
      const { problem } = toProblem(error, deps.routeLabel(c), c.get('log'));
      const kept = problem.errors?.slice(0, Math.max(0, errorBudget));
      errorBudget -= kept?.length ?? 0;
      const errors = kept?.map((e) => ({ pointer: `/items/${index}${e.pointer === '/' ? '' : e.pointer}`, detail: e.detail }));
      const truncated = problem.errorsTruncated || (kept?.length ?? 0) < (problem.errors?.length ?? 0);
      return { index, status: problem.status, body: { ...problem, ...(errors ? { errors } : {}), ...(truncated ? { errorsTruncated: true } : {}) } };
    };
    const prepared = body.items.map((item, index) => {
      try {
        return prepare(c, item, batchKey === undefined ? undefined : batchItemKey(batchKey, index));
      } catch (error) {
        return failed(index, error);
      }
    });
    const valid = prepared.filter((p): p is PreparedEvaluation => 'evaluationId' in p);
    const outcomes = valid.length > 0 ? await write(c, valid) : [];
    let next = 0;
    const results = prepared.map((p, index) => {
      if (!('evaluationId' in p)) return p;
      const outcome = outcomes[next++];
      if (!outcome?.ok) return failed(index, outcome?.error);
      const { result } = outcome;
      return { index, status: 202, ...(result.replayed ? { replayed: true } : {}), body: acceptedBody(result) };
    });
    // Nothing committed and the database is down: the whole batch may simply be retried.
    if (results.every((r) => r.status === 503)) throw databaseUnavailable();
    return c.json({ results }, 207);
  });

  app.get('/v1/evaluations/:id', async (c) => {
    const applicationId = c.get('applicationId');
    const found = await deps.limits.withConnection(applicationId, () => findEvaluation(db, applicationId, c.req.param('id')));
    if (!found) throw new ProblemError(404, 'no such evaluation');
    return c.json(evaluationBody(found));
  });

  app.get('/v1/evaluations:stream', async (c) => {
    const applicationId = c.get('applicationId');
    const lastEventId = header(c, 'last-event-id');
    const resumeAt = lastEventId === undefined ? undefined : deps.cursors.decode(lastEventId, applicationId);
    if (lastEventId !== undefined && resumeAt?.order !== 'scored') {
      throw new ProblemError(400, 'Last-Event-ID is not an event id of this stream', {
        errors: [{ pointer: 'header:Last-Event-ID', detail: 'the id of an event this stream sent (or a nextCursor of scoredSince)' }],
      });
    }
    const release = deps.streams.open(applicationId);
    if (!release) throw tooManyRequests(`this application has ${deps.streams.settings.maxPerApplication} results streams open already`, 5);
    try {
      const start = resumeAt ?? (await deps.limits.withConnection(applicationId, () => latestResultPosition(db, applicationId)));
      return streamResults(
        c,
        { db, limits: deps.limits, cursors: deps.cursors, streams: deps.streams, stopping: deps.stopping, log: c.get('log') },
        applicationId,
        start,
        release,
      );
    } catch (error) {
      release();
      throw error;
    }
  });

  app.post('/v1/evaluations/:id/scores', async (c) => {
    const applicationId = c.get('applicationId');
    const body = deps.validateScores.assert<{ scores: ClientScoreInput[] }>(await readJson(c), 'the scores');
    const unstorable = unstorableFields(body);
    if (unstorable.length > 0) throw new ValidationError('the scores hold values that cannot be stored', unstorable);
    const stored = await deps.limits.withConnection(applicationId, () =>
      recordClientScores(db, { applicationId, evaluationId: c.req.param('id'), scores: body.scores, topics: config.topics, now: deps.clock() }),
    );
    if (!stored) throw new ProblemError(404, 'no such evaluation');
    deps.nudger.nudge();
    return c.json({ evaluationId: c.req.param('id'), scores: stored.map(scoreBody) });
  });

  app.delete('/v1/evaluations/:id', async (c) => {
    const applicationId = c.get('applicationId');
    const deleted = await deps.limits.withConnection(applicationId, () =>
      deleteEvaluation(db, { applicationId, evaluationId: c.req.param('id'), topics: config.topics, now: deps.clock() }),
    );
    if (!deleted) throw new ProblemError(404, 'no such evaluation');
    c.get('log').info({ evaluationId: c.req.param('id'), applicationId }, 'evaluation deleted');
    deps.nudger.nudge();
    return c.body(null, 204);
  });

  app.get('/v1/evaluations', async (c) => {
    const applicationId = c.get('applicationId');
    const errors: FieldError[] = [];
    const query = c.req.query();
    // A key sees only its own application; naming another one finds nothing.
    if (query.applicationId !== undefined && query.applicationId !== applicationId) throw new ProblemError(404, 'no such application');
    const status = query.status;
    if (status !== undefined && !STATUSES.includes(status as EvaluationStatus))
      errors.push({ pointer: 'query:status', detail: `one of ${STATUSES.join(', ')}` });
    const since = query.since === undefined ? undefined : parseRfc3339(query.since);
    if (since === null) errors.push({ pointer: 'query:since', detail: 'an RFC 3339 date-time, e.g. 2024-05-01T12:00:00Z' });
    const limit = query.limit === undefined ? 50 : /^\d{1,3}$/.test(query.limit) ? Number(query.limit) : NaN;
    if (!(limit >= 1 && limit <= 500)) errors.push({ pointer: 'query:limit', detail: 'an integer from 1 to 500, in digits' });
    const after = query.cursor === undefined ? undefined : deps.cursors.decode(query.cursor, applicationId);
    if (query.cursor !== undefined && !after) errors.push({ pointer: 'query:cursor', detail: 'a nextCursor returned by this endpoint' });
    const scoredSince = query.scoredSince === undefined ? undefined : parseRfc3339(query.scoredSince);
    if (scoredSince === null) errors.push({ pointer: 'query:scoredSince', detail: 'an RFC 3339 date-time, e.g. 2024-05-01T12:00:00Z' });
    else if (scoredSince && scoredSince.getTime() < deps.clock().getTime() - SCORED_SINCE_MAX_WINDOW_MS)
      errors.push({ pointer: 'query:scoredSince', detail: `at most ${SCORED_SINCE_MAX_WINDOW_MS / 3_600_000} hours ago; keep polling with nextCursor` });
    if (scoredSince && after && after.order !== 'scored')
      errors.push({ pointer: 'query:cursor', detail: 'a cursor of the created order; scoredSince pages in the scored order' });
    if (errors.length > 0) throw new ProblemError(400, 'invalid query parameters', { errors });
    const scored = scoredSince !== undefined || after?.order === 'scored';
    const filters = { applicationId, status: status as EvaluationStatus | undefined, since: since ?? undefined, after, limit };
    const page = await deps.limits.withConnection(applicationId, () =>
      scored ? listScoredPage(db, { ...filters, scoredSince: scoredSince ?? undefined }) : listEvaluationsPage(db, filters),
    );
    return c.json(pageBody(page, deps.cursors, applicationId));
  });

  // A known path with a method it does not serve: 405 with Allow (registered last, so the
  // routes above answer first). HEAD is served by hono through the GET routes.
  for (const [path, allow] of ALLOWED_METHODS) {
    app.all(path, (c) => {
      throw new ProblemError(405, `${c.req.method} is not allowed on ${path}; use ${allow}`, { headers: { allow } });
    });
  }
}

/**
 * A batch item's idempotency key: the batch's key and the item's index. The newline cannot occur
 * in a header value, so it never equals a key sent with a single POST.
 */
function batchItemKey(key: string, index: number): string {
  return `${key}\n${index}`;
}
