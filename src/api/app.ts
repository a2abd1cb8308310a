// The ingest API as a hono app. createApiApp(ctx) builds it from injected parts so tests can call
// app.request() without a socket; src/api/command.ts is the composition root that serves it.
// Routes are in routes.ts, response bodies in responses.ts, error mapping in error-mapping.ts.
import { randomUUID } from 'node:crypto';
import { Hono, type Context } from 'hono';
import { matchedRoutes } from 'hono/route';
import { Histogram, type Registry } from 'prom-client';
import { metricsIn } from '../metrics.js';
import type { Config } from '../config.js';
import type { Db } from '../db/index.js';
import type { DimensionRegistry } from '../dimensions.js';
import { isWellFormedApiKey } from '../keys.js';
import type { Logger } from '../logging.js';
import { batchRequestSchema, clientScoresRequestSchema, evaluationRequestSchema } from '../schemas/evaluation-request.js';
import { createBoundedValidator } from '../schemas/validator.js';
import { bearerToken, createKeyResolver, type KeyResolver } from './auth.js';
import { createCursorCodec } from './cursor.js';
import { problemResponse, toProblem } from './error-mapping.js';
import { createOutboxNudger, type OutboxNudger } from '../outbox-wakeup.js';
import { createIngestWriter, type Queryable } from './evaluations.js';
import { createLimits, tooManyRequests, type Limits } from './limits.js';
import { drainUnreadBody, header } from './node-request.js';
import { buildOpenApiDocument } from './openapi.js';
import { ProblemError } from './problem.js';
import { contextFromTraceparent, inSpan, SpanKind, traceIdOf, traceparentOf } from '../tracing.js';
import { registerRoutes, type ApiEnv } from './routes.js';
import { createResultStreams, DEFAULT_RESULT_STREAM_SETTINGS, type ResultStreamSettings } from './results-stream.js';

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
  /** Per-application quotas; defaults to the configured ones (see limits.ts). */
  limits?: Limits;
  /** Wakes the relay after each commit; defaults to one over `db`. */
  nudger?: OutboxNudger;
  /** Overrides of the results stream's settings (tests shorten the heartbeat). */
  resultStreams?: Partial<ResultStreamSettings>;
  /** Aborted when the process stops: open results streams end at once instead of holding shutdown. */
  stopping?: AbortSignal;
}

/** A client's own X-Request-Id is kept when it is this tame; otherwise one is made. */
const REQUEST_ID = /^[A-Za-z0-9._-]{1,128}$/;

export function createApiApp(ctx: ApiContext): Hono<ApiEnv> {
  const { db, config, logger } = ctx;
  const keys = ctx.keys ?? createKeyResolver(db, { ttlMs: config.api.keyCacheTtlMs });
  const limits = ctx.limits ?? createLimits(config.api);
  const duration = new Histogram({
    name: 'http_request_duration_seconds',
    help: 'HTTP request duration by route pattern, method and status.',
    labelNames: ['route', 'method', 'status'],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [ctx.registry],
  });

  const metric = metricsIn(ctx.registry);
  const groupWait = metric.histogram(
    'evalbox_api_ingest_queue_seconds',
    'Time an ingest request (one POST, or the valid items of one batch) waited for its group to start writing.',
    [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
  );
  const statementRows = metric.histogram(
    'evalbox_api_ingest_statement_rows',
    'Evaluations per ingest statement (a group, or one request with group commit off), by outcome; a committed statement is one commit.',
    [1, 2, 4, 8, 16, 32, 64, 128],
    ['outcome'],
  );
  const statementSeconds = metric.histogram(
    'evalbox_api_ingest_statement_seconds',
    "An ingest statement and its commit, from asking the pool for a connection to Postgres' answer, by outcome.",
    [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5],
    ['outcome'],
  );

  const app = new Hono<ApiEnv>();

  app.use('*', async (c: Context<ApiEnv>, next) => {
    const started = process.hrtime.bigint();
    // Every answer carries a request id, and every log line about the request names it.
    const given = header(c, 'x-request-id');
    const requestId = given !== undefined && REQUEST_ID.test(given) ? given : randomUUID();
    c.set('requestId', requestId);
    // The request's span continues the client's trace (a valid traceparent header) or starts one.
    await inSpan(c.req.method, { kind: SpanKind.SERVER, parent: contextFromTraceparent(header(c, 'traceparent')) }, async (span) => {
      const traceId = traceIdOf(traceparentOf(span));
      c.set('log', logger.child(traceId ? { requestId, traceId } : { requestId }));
      try {
        await next();
      } catch (thrown) {
        // hono hands only Error instances to onError; anything else thrown (or an Error from
        // another realm, as Node's socket errors are under a test VM) is answered here instead.
        c.res = problemResponse(c, toProblem(thrown, routeLabel(c), c.get('log')));
      }
      // Any answer sent before the body was read (an error, a GET or HEAD with a body): drain it.
      await drainUnreadBody(c, 4 * config.api.bodyLimitBytes, 5_000);
      c.res.headers.set('x-request-id', requestId);
      duration.observe({ route: routeLabel(c), method: c.req.method, status: String(c.res.status) }, Number(process.hrtime.bigint() - started) / 1e9);
      if (span.isRecording()) {
        span.updateName(`${c.req.method} ${routeLabel(c)}`);
        span.setAttributes({
          'http.request.method': c.req.method,
          'http.route': routeLabel(c),
          'http.response.status_code': c.res.status,
          'evalbox.request_id': requestId,
        });
      }
    });
  });
  app.onError((error, c) => problemResponse(c, toProblem(error, routeLabel(c), c.get('log'))));
  app.notFound((c) => problemResponse(c, new ProblemError(404, `no route for ${c.req.method} ${c.req.path}`)));

  app.use('/v1/evaluations*', async (c: Context<ApiEnv>, next) => {
    const authorization = header(c, 'authorization');
    const token = bearerToken(authorization);
    // Failures are logged with the request id and the reason, never with the key.
    if (!token) {
      c.get('log').info({ reason: authorization === undefined ? 'missing' : 'malformed' }, 'authentication failed');
      throw new ProblemError(401, 'send an API key as Authorization: Bearer <key>', { headers: { 'www-authenticate': 'Bearer' } });
    }
    const applicationId = await keys.resolve(token);
    if (!applicationId) {
      c.get('log').info({ reason: isWellFormedApiKey(token) ? 'unknown or revoked' : 'not an evalbox key' }, 'authentication failed');
      throw new ProblemError(401, 'the API key is unknown or revoked', { headers: { 'www-authenticate': 'Bearer' } });
    }
    c.set('applicationId', applicationId);
    const release = limits.enter(applicationId);
    if (!release) throw tooManyRequests(`more than ${config.api.concurrencyPerApp} requests of this application are in flight`, 1);
    try {
      const decision = limits.take(applicationId, 1);
      if (!decision.allowed) throw tooManyRequests('this application is over its request rate', decision.retryAfterSeconds, decision.headers);
      await next();
      for (const [name, value] of Object.entries(decision.headers)) if (!c.res.headers.has(name)) c.res.headers.set(name, value);
    } finally {
      release();
    }
  });

  const nudger = ctx.nudger ?? createOutboxNudger(db, { onError: (error) => logger.warn({ err: error }, 'relay nudge failed') });
  registerRoutes(app, {
    db,
    pool: ctx.pool,
    config,
    logger,
    dimensions: ctx.dimensions,
    clock: ctx.clock ?? (() => new Date()),
    validateRequest: createBoundedValidator(evaluationRequestSchema),
    validateBatch: createBoundedValidator(batchRequestSchema),
    validateScores: createBoundedValidator(clientScoresRequestSchema),
    nudger,
    // Heartbeats come well within the server's idle bound, which would otherwise cut a quiet stream.
    streams: createResultStreams({
      ...DEFAULT_RESULT_STREAM_SETTINGS,
      heartbeatMs: Math.min(DEFAULT_RESULT_STREAM_SETTINGS.heartbeatMs, Math.floor(config.api.bodyIdleTimeoutMs / 2)),
      ...ctx.resultStreams,
    }),
    stopping: ctx.stopping ?? new AbortController().signal,
    openapi: buildOpenApiDocument('1'),
    routeLabel,
    limits,
    cursors: createCursorCodec(config.api.cursorSecret || config.databaseUrl),
    writer: createIngestWriter({
      db,
      pool: ctx.pool,
      nudger,
      groupCommit: config.api.groupCommit,
      idempotencyTtlMs: config.api.idempotencyTtlHours * 3_600_000,
      observer: {
        waited: (seconds) => groupWait.observe(seconds),
        statement: (rows, seconds, outcome) => {
          statementRows.observe({ outcome }, rows);
          statementSeconds.observe({ outcome }, seconds);
        },
      },
    }),
  });
  return app;
}

/** The route pattern a request matched (low-cardinality metric label); middleware patterns end in '*'. */
function routeLabel(c: Context<ApiEnv>): string {
  const routes = matchedRoutes(c);
  for (let i = routes.length - 1; i >= 0; i--) {
    const path = routes[i]?.path;
    if (path && !path.endsWith('*')) return path;
  }
  return 'unmatched';
}
