// The ingest API as a hono app. createApiApp(ctx) builds it from injected parts so tests can call
// app.request() without a socket; src/api/command.ts is the composition root that serves it.
import { Hono, type Context } from 'hono';
import { HTTPException } from 'hono/http-exception';
import { matchedRoutes } from 'hono/route';
import { Histogram, type Registry } from 'prom-client';
import type { Config } from '../config.js';
import type { Db } from '../db/index.js';
import type { EvaluationStatus } from '../db/types.js';
import type { DimensionRegistry } from '../dimensions.js';
import { classifyPgError, EvalboxError, ValidationError, type FieldError } from '../errors.js';
import type { Logger } from '../logging.js';
import { batchRequestSchema, evaluationRequestSchema, type EvaluationRequest } from '../schemas/evaluation-request.js';
import { toScoreResult } from '../schemas/events.js';
import { assertValid, createAjv } from '../schemas/validator.js';
import { bearerToken, createKeyResolver, type KeyResolver } from './auth.js';
import { createOutboxNudger, type OutboxNudger } from '../outbox-wakeup.js';
import {
  createIngestWriter,
  decodeCursor,
  encodeCursor,
  findEvaluation,
  listEvaluationsPage,
  prepareEvaluation,
  type IngestResult,
  type PreparedEvaluation,
  type Queryable,
} from './evaluations.js';
import { header, readBodyText } from './node-request.js';
import { buildOpenApiDocument } from './openapi.js';
import { PROBLEM_CONTENT_TYPE, ProblemError } from './problem.js';
import { unstorableFields } from './storable.js';

export interface ApiContext {
  db: Db;
  config: Config;
  /** prom-client registry the request histogram registers in. */
  registry: Registry;
  logger: Logger;
  dimensions: DimensionRegistry;
  clock?: () => Date;
  /** The pool behind `db`: lets the hot path use a named prepared statement (faster, optional). */
  pool?: Queryable;
  /** API-key lookup; defaults to a cached resolver over `db` (see auth.ts). */
  keys?: KeyResolver;
  /** Wakes the relay after each commit; defaults to one over `db`. */
  nudger?: OutboxNudger;
}

type Env = { Variables: { applicationId: string } };

const STATUSES: EvaluationStatus[] = ['PENDING', 'SCORED', 'PARTIALLY_SCORED', 'SCORING_FAILED'];
const TRACEPARENT = /^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/;

export function createApiApp(ctx: ApiContext): Hono<Env> {
  const { db, config, logger, dimensions } = ctx;
  const clock = ctx.clock ?? (() => new Date());
  const keys = ctx.keys ?? createKeyResolver(db, { ttlMs: config.api.keyCacheTtlMs });
  const ajv = createAjv();
  const validateRequest = ajv.compile(evaluationRequestSchema);
  const validateBatch = ajv.compile(batchRequestSchema);
  const openapi = buildOpenApiDocument('1');
  const writer = createIngestWriter({
    db,
    pool: ctx.pool,
    nudger: ctx.nudger ?? createOutboxNudger(db, { onError: (error) => logger.warn({ err: loggable(error) }, 'relay nudge failed') }),
    groupCommit: config.api.groupCommit,
    idempotencyTtlMs: config.api.idempotencyTtlHours * 3_600_000,
  });
  const duration = new Histogram({
    name: 'http_request_duration_seconds',
    help: 'HTTP request duration by route pattern, method and status.',
    labelNames: ['route', 'method', 'status'],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [ctx.registry],
  });

  const app = new Hono<Env>();

  app.use('*', async (c, next) => {
    const started = process.hrtime.bigint();
    try {
      await next();
    } catch (thrown) {
      // hono hands only Error instances to onError; anything else thrown (or an Error from
      // another realm, as Node's socket errors are under a test VM) is answered here instead.
      c.res = problemResponse(c, toProblem(thrown, routeLabel(c)));
    }
    duration.observe({ route: routeLabel(c), method: c.req.method, status: String(c.res.status) }, Number(process.hrtime.bigint() - started) / 1e9);
  });

  /** Maps anything thrown to a problem; logs what is not the client's fault (ids, never content). */
  function toProblem(error: unknown, route: string): ProblemError {
    if (error instanceof HTTPException) return ProblemError.from(error);
    if (error instanceof ValidationError) return new ProblemError(400, error.message, { errors: error.errors });
    if (error instanceof EvalboxError && error.code === 'EVENT_TOO_LARGE') return new ProblemError(413, error.message);
    const classified = classifyPgError(error);
    if (classified.retryable) {
      logger.warn({ err: loggable(classified), route }, 'database unavailable');
      return new ProblemError(503, 'the database is unavailable; retry later', { headers: { 'retry-after': '1' } });
    }
    const sqlstate = sqlstateOf(error);
    // A value the database refuses (class 22 data exception, 54001 nesting too deep) is bad
    // input that slipped past validation: still the client's error, never a 5xx.
    if (sqlstate && (sqlstate.startsWith('22') || sqlstate === '54001')) {
      logger.warn({ err: loggable(error), route }, 'the database refused a value that passed validation');
      return new ProblemError(400, 'the request holds a value that cannot be stored', {
        errors: [{ pointer: '/', detail: `refused by the database (SQLSTATE ${sqlstate})` }],
      });
    }
    logger.error({ err: loggable(error), route }, 'request failed');
    return new ProblemError(500, 'internal error');
  }

  app.onError((error, c) => problemResponse(c, toProblem(error, routeLabel(c))));
  app.notFound((c) => problemResponse(c, new ProblemError(404, `no route for ${c.req.method} ${c.req.path}`)));

  app.get('/openapi.json', (c) => c.json(openapi));
  app.get('/v1/dimensions', (c) =>
    c.json({
      defaults: dimensions.defaults,
      items: dimensions.list().map((d) => ({
        id: d.id,
        name: d.name,
        description: d.description,
        scale: d.scale,
        direction: d.direction,
        requiredInputs: d.requiredInputs,
        scorerKind: d.scorerKind,
        scorerName: d.scorerName,
        scorerVersion: d.scorerVersion,
        samplingRate: d.samplingRate,
      })),
    }),
  );

  app.use('/v1/evaluations*', async (c, next) => {
    const token = bearerToken(header(c, 'authorization'));
    if (!token) throw new ProblemError(401, 'send an API key as Authorization: Bearer <key>', { headers: { 'www-authenticate': 'Bearer' } });
    const applicationId = await keys.resolve(token);
    if (!applicationId) throw new ProblemError(401, 'the API key is unknown or revoked', { headers: { 'www-authenticate': 'Bearer' } });
    c.set('applicationId', applicationId);
    await next();
  });

  // The connection is closed after a 413 rather than reading the rest of an oversized body.
  const tooLarge = () => new ProblemError(413, `the body exceeds ${config.api.bodyLimitBytes} bytes`, { headers: { connection: 'close' } });

  async function readJson(c: Context<Env>): Promise<unknown> {
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
    const request = assertValid<EvaluationRequest>(validateRequest, body, 'the evaluation');
    const unstorable = unstorableFields(request);
    if (unstorable.length > 0) throw new ValidationError('the evaluation holds values that cannot be stored', unstorable);
    const requested = request.dimensions ?? dimensions.defaults;
    const unknown: FieldError[] = requested
      .map((id, index) => ({ id, index }))
      .filter(({ id }) => !dimensions.get(id))
      .map(({ id, index }) => ({ pointer: `/dimensions/${index}`, detail: `unknown dimension "${id}" (see GET /v1/dimensions)` }));
    if (unknown.length > 0) throw new ValidationError('the evaluation names unknown dimensions', unknown);
    return { request, dimensions: requested };
  }

  /** Validates one item and builds the rows it will write (throws for the client's errors). */
  function prepare(c: Context<Env>, body: unknown, idempotencyKey: string | undefined): PreparedEvaluation {
    const { request, dimensions: requested } = toRequest(body);
    const traceparent = header(c, 'traceparent');
    return prepareEvaluation({
      applicationId: c.get('applicationId'),
      request,
      dimensions: requested,
      idempotencyKey,
      traceparent: traceparent && TRACEPARENT.test(traceparent) ? traceparent : undefined,
      eventsTopic: config.topics.events,
      now: clock(),
    });
  }

  function idempotencyKeyOf(c: Context<Env>): string | undefined {
    const key = header(c, 'idempotency-key');
    if (key !== undefined && (key.length === 0 || key.length > 200)) {
      throw new ProblemError(400, 'Idempotency-Key must be 1 to 200 characters', { errors: [{ pointer: 'header:Idempotency-Key', detail: 'length 1..200' }] });
    }
    return key;
  }

  const accepted = (result: IngestResult) => ({
    evaluationId: result.evaluationId,
    status: result.status,
    dimensions: result.dimensions,
    links: { self: `/v1/evaluations/${result.evaluationId}` },
  });

  app.post('/v1/evaluations', async (c) => {
    const idempotencyKey = idempotencyKeyOf(c);
    const [outcome] = await writer.write([prepare(c, await readJson(c), idempotencyKey)]);
    if (!outcome?.ok) throw outcome?.error;
    const { result } = outcome;
    if (logger.isLevelEnabled('debug'))
      logger.debug({ evaluationId: result.evaluationId, applicationId: c.get('applicationId'), replayed: result.replayed }, 'evaluation accepted');
    if (result.replayed) c.header('idempotent-replayed', 'true');
    c.header('location', `/v1/evaluations/${result.evaluationId}`);
    return c.json(accepted(result), 202);
  });

  app.post('/v1/evaluations:batch', async (c) => {
    const batchKey = idempotencyKeyOf(c);
    const body = assertValid<{ items: unknown[] }>(validateBatch, await readJson(c), 'the batch');
    if (body.items.length > config.api.batchLimit) {
      throw new ProblemError(400, `a batch holds at most ${config.api.batchLimit} items`, {
        errors: [{ pointer: '/items', detail: `more than ${config.api.batchLimit} items` }],
      });
    }
    // The valid items are written in request order by one statement (their events reach Kafka in
    // that order); an invalid item, or one the database refuses, gets its own result and does not
    // reject the others, so the client knows exactly which ones were committed. With an
    // Idempotency-Key, item i is idempotent under the key and its index (docs/api.md).
    const failed = (index: number, error: unknown) => {
      const { problem } = toProblem(error, routeLabel(c));
      const errors = problem.errors?.map((e) => ({ pointer: `/items/${index}${e.pointer === '/' ? '' : e.pointer}`, detail: e.detail }));
      return { index, status: problem.status, body: { ...problem, ...(errors ? { errors } : {}) } };
    };
    const prepared = body.items.map((item, index) => {
      try {
        return prepare(c, item, batchKey === undefined ? undefined : batchItemKey(batchKey, index));
      } catch (error) {
        return failed(index, error);
      }
    });
    const valid = prepared.filter((p): p is PreparedEvaluation => 'evaluationId' in p);
    const outcomes = valid.length > 0 ? await writer.write(valid) : [];
    let next = 0;
    const results = prepared.map((p, index) => {
      if (!('evaluationId' in p)) return p;
      const outcome = outcomes[next++];
      if (!outcome?.ok) return failed(index, outcome?.error);
      const { result } = outcome;
      return { index, status: 202, ...(result.replayed ? { replayed: true } : {}), body: accepted(result) };
    });
    // Nothing committed and the database is down: the whole batch may simply be retried.
    if (results.every((r) => r.status === 503)) throw new ProblemError(503, 'the database is unavailable; retry later', { headers: { 'retry-after': '1' } });
    return c.json({ results }, 207);
  });

  app.get('/v1/evaluations/:id', async (c) => {
    const found = await findEvaluation(db, c.get('applicationId'), c.req.param('id'));
    if (!found) throw new ProblemError(404, 'no such evaluation');
    const { evaluation: e, scores } = found;
    return c.json({
      evaluationId: e.id,
      applicationId: e.application_id,
      status: e.status,
      modelId: e.model_id,
      prompt: e.prompt,
      response: e.response,
      context: e.context,
      reference: e.reference,
      metadata: e.metadata,
      dimensions: e.dimensions,
      externalId: e.external_id,
      createdAt: e.created_at,
      scoredAt: e.scored_at,
      scores: scores.map((s) => ({
        ...toScoreResult(s),
        judgeModel: s.judge_model,
        attempts: s.attempts,
        inputTokens: s.input_tokens,
        outputTokens: s.output_tokens,
        latencyMs: s.latency_ms,
        costUsd: s.cost_usd === null ? null : Number(s.cost_usd),
        cacheHit: s.cache_hit,
        updatedAt: s.updated_at,
      })),
    });
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
    const since = query.since === undefined ? undefined : new Date(query.since);
    if (since && Number.isNaN(since.getTime())) errors.push({ pointer: 'query:since', detail: 'an RFC 3339 date-time' });
    const limit = query.limit === undefined ? 50 : Number(query.limit);
    if (!Number.isInteger(limit) || limit < 1 || limit > 500) errors.push({ pointer: 'query:limit', detail: 'an integer from 1 to 500' });
    const after = query.cursor === undefined ? undefined : decodeCursor(query.cursor);
    if (query.cursor !== undefined && !after) errors.push({ pointer: 'query:cursor', detail: 'a nextCursor returned by this endpoint' });
    if (errors.length > 0) throw new ProblemError(400, 'invalid query parameters', { errors });
    const page = await listEvaluationsPage(db, { applicationId, status: status as EvaluationStatus | undefined, since, after, limit });
    return c.json({
      items: page.items.map((e) => ({
        evaluationId: e.id,
        status: e.status,
        modelId: e.model_id,
        dimensions: e.dimensions,
        externalId: e.external_id,
        createdAt: e.created_at,
        scoredAt: e.scored_at,
      })),
      nextCursor: page.next ? encodeCursor(page.next) : null,
      hasMore: page.hasMore,
    });
  });

  // A known path with a method it does not serve: 405 with Allow (registered last, so the
  // routes above answer first). HEAD is served by hono through the GET routes.
  const allowed: [string, string][] = [
    ['/v1/evaluations', 'GET, HEAD, POST'],
    ['/v1/evaluations:batch', 'POST'],
    ['/v1/evaluations/:id', 'GET, HEAD'],
    ['/v1/dimensions', 'GET, HEAD'],
    ['/openapi.json', 'GET, HEAD'],
  ];
  for (const [path, allow] of allowed) {
    app.all(path, (c) => {
      throw new ProblemError(405, `${c.req.method} is not allowed on ${path}; use ${allow}`, { headers: { allow } });
    });
  }

  return app;
}

/**
 * A batch item's idempotency key: the batch's key and the item's index. The newline cannot occur
 * in a header value, so it never equals a key sent with a single POST.
 */
function batchItemKey(key: string, index: number): string {
  return `${key}\n${index}`;
}

/** The route pattern a request matched (low-cardinality metric label); middleware patterns end in '*'. */
function routeLabel(c: Context): string {
  const routes = matchedRoutes(c);
  for (let i = routes.length - 1; i >= 0; i--) {
    const path = routes[i]?.path;
    if (path && !path.endsWith('*')) return path;
  }
  return 'unmatched';
}

function sqlstateOf(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}

/**
 * The parts of an error worth logging. A Postgres error's `detail` can quote the failing row
 * (prompt and response text), so it is left out; the SQLSTATE and constraint say enough.
 */
function loggable(error: unknown): Record<string, unknown> {
  const chain: Record<string, unknown>[] = [];
  let current: unknown = error;
  for (let depth = 0; typeof current === 'object' && current !== null && 'message' in current && depth < 5; depth++) {
    const e = current as Error & { code?: unknown; constraint?: unknown; table?: unknown; column?: unknown };
    chain.push({
      type: e.name,
      message: e.message,
      code: e.code,
      constraint: e.constraint,
      table: e.table,
      column: e.column,
      stack: depth === 0 ? e.stack : undefined,
    });
    current = e.cause;
  }
  return { ...chain[0], causes: chain.slice(1) };
}

function problemResponse(c: Context, error: ProblemError): Response {
  const body = { ...error.problem, instance: c.req.path };
  return new Response(JSON.stringify(body), {
    status: error.problem.status,
    headers: { 'content-type': PROBLEM_CONTENT_TYPE, ...error.headers },
  });
}
