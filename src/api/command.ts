// `evalbox api`: the composition root of the ingest API process. Builds its parts from the
// validated config, serves the public and admin ports, and shuts down in LIFO order on SIGTERM.
import { CONNECTION_HELP, CONNECTION_OPTIONS, parse, type Command } from '../cli/args.js';
import { loadConfig, requireSetting } from '../config.js';
import { createDb, waitForDatabase } from '../db/index.js';
import { createPublishedDimensionRegistry } from '../dimensions.js';
import { createLogger } from '../logging.js';
import { Releasers, serveAdminPort, stopSignal } from '../lifecycle.js';
import { closeServer, createRegistry } from '../metrics.js';
import { createApiApp } from './app.js';
import { createKeyResolver } from './auth.js';
import { serveApi } from './server.js';

export const apiCommand: Command = {
  name: 'api',
  summary: 'run the ingest REST API',
  help: `Usage: evalbox api [--port P] [--admin-port Q] [--host H]

Serves POST /v1/evaluations, POST /v1/evaluations:batch, GET /v1/evaluations[/{id}],
GET /v1/dimensions and GET /openapi.json on --port, and /healthz, /readyz, /metrics on
--admin-port. SIGTERM stops intake, finishes in-flight requests and exits 0.

Options (flags override the environment):
  --port P            public port (env EVALBOX_API_PORT, default 8080; 0 picks a free port)
  --admin-port Q      admin port (env EVALBOX_ADMIN_PORT; 0 = none)
  --host H            interface of the public port (env EVALBOX_HOST, default 127.0.0.1)
  --admin-host H      interface of the admin port (env EVALBOX_ADMIN_HOST, default 127.0.0.1;
                      set 0.0.0.0 where probes and scrapers reach it from outside, as in Kubernetes)
  --body-limit BYTES  largest request body (env EVALBOX_API_BODY_LIMIT, default 1048576)
  --batch-limit N     most items per batch (env EVALBOX_API_BATCH_LIMIT, default 100)
  --topic-events T    topic of evaluation.created (env EVALBOX_TOPIC_EVENTS)
  --pool-size N       database connections (env EVALBOX_API_POOL_SIZE, default 20)
  --key-cache-ttl-ms MS   how long a key lookup is cached; a revoked key works this much
                      longer (env EVALBOX_API_KEY_CACHE_TTL_MS, default 10000; 0 = no cache)
  --headers-timeout-ms MS      all request headers must arrive within this (env
                      EVALBOX_API_HEADERS_TIMEOUT_MS, default 10000)
  --request-timeout-ms MS      the whole request must arrive within this (env
                      EVALBOX_API_REQUEST_TIMEOUT_MS, default 30000)
  --keep-alive-timeout-ms MS   an idle keep-alive connection is closed after this (env
                      EVALBOX_API_KEEP_ALIVE_TIMEOUT_MS, default 5000)
  --body-idle-timeout-ms MS    a connection on which nothing arrives for this long is closed
                      (env EVALBOX_API_BODY_IDLE_TIMEOUT_MS, default 10000)
  --statement-timeout-ms MS    Postgres cancels an API statement running (or waiting on a
                      lock) longer than this (env EVALBOX_API_STATEMENT_TIMEOUT_MS, default 5000)
  Quotas, per application (all its keys together); over them: 429 with Retry-After:
  --rate-per-second N  sustained evaluations or reads per second (env EVALBOX_API_RATE_PER_SECOND,
                      default 500; a batch item counts as one)
  --rate-burst N      what may be spent at once above the rate (env EVALBOX_API_RATE_BURST, default 1000)
  --concurrency-per-app N  requests in flight at once (env EVALBOX_API_CONCURRENCY_PER_APP, default 32)
  --pool-share-per-app N   database connections one application may hold at once (env
                      EVALBOX_API_POOL_SHARE_PER_APP; default a quarter of --pool-size)
  (env EVALBOX_API_CURSOR_SECRET: the key list cursors are sealed with; the same on every
                      replica; default derived from the database URL)
  --shutdown-grace-ms MS  on SIGTERM, time in-flight requests get before their connections
                      are cut (env EVALBOX_SHUTDOWN_GRACE_MS, default 10000)
  --group-commit on|off   write concurrent POSTs with one statement and one commit
                      (env EVALBOX_API_GROUP_COMMIT, default on)
  --group-commit-window-ms MS  longest a request waits for others (env
                      EVALBOX_API_GROUP_COMMIT_WINDOW_MS, default 1; 0 = one event-loop turn)
  --group-commit-max-rows N    a group is written once it holds N rows (env
                      EVALBOX_API_GROUP_COMMIT_MAX_ROWS, default 64)
  --idempotency-ttl-hours H    how long an Idempotency-Key is honoured (env
                      EVALBOX_API_IDEMPOTENCY_TTL_HOURS, default 24)

Logs carry evaluation and application ids, never prompt or response text.
${CONNECTION_HELP}`,
  async run(argv) {
    const { values } = parse(argv, {
      ...CONNECTION_OPTIONS,
      port: { type: 'string' },
      'admin-port': { type: 'string' },
      host: { type: 'string' },
      'admin-host': { type: 'string' },
      'headers-timeout-ms': { type: 'string' },
      'request-timeout-ms': { type: 'string' },
      'keep-alive-timeout-ms': { type: 'string' },
      'body-idle-timeout-ms': { type: 'string' },
      'statement-timeout-ms': { type: 'string' },
      'rate-per-second': { type: 'string' },
      'rate-burst': { type: 'string' },
      'concurrency-per-app': { type: 'string' },
      'pool-share-per-app': { type: 'string' },
      'body-limit': { type: 'string' },
      'batch-limit': { type: 'string' },
      'topic-events': { type: 'string' },
      'pool-size': { type: 'string' },
      'key-cache-ttl-ms': { type: 'string' },
      'shutdown-grace-ms': { type: 'string' },
      'group-commit': { type: 'string' },
      'group-commit-window-ms': { type: 'string' },
      'group-commit-max-rows': { type: 'string' },
      'idempotency-ttl-hours': { type: 'string' },
    });
    if (values.help) {
      process.stdout.write(`${this.help}\n`);
      return 0;
    }
    const stopped = stopSignal();
    const config = loadConfig(process.env, values);
    const logger = createLogger({ level: config.logLevel, name: 'evalbox-api' });
    const handle = createDb(requireSetting(config.databaseUrl, 'DATABASE_URL'), {
      max: config.api.poolSize,
      applicationName: 'evalbox-api',
      statementTimeoutMs: config.api.statementTimeoutMs,
    });
    await waitForDatabase(handle, { onRetry: (error, attempt) => logger.warn({ err: error, attempt }, 'waiting for the database') });
    const registry = createRegistry('api');
    const keys = createKeyResolver(handle.db, { ttlMs: config.api.keyCacheTtlMs });
    // Built-in dimensions plus the judge rubrics the scorers published.
    const dimensions = await createPublishedDimensionRegistry(handle.db, { onError: (error) => logger.warn({ err: error }, 'dimension refresh failed') });
    const app = createApiApp({ db: handle.db, pool: handle.pool, config, registry, logger, dimensions, keys });

    const releasers = new Releasers();
    releasers.add(() => handle.close());
    releasers.add(() => dimensions.close());
    const { server, port } = await serveApi(app, config, logger);
    releasers.add(async () => {
      // Stop accepting and wait for in-flight requests; past the grace period, cut what is left
      // so the pool can close and the process exits within a Kubernetes termination grace.
      const http = server as { closeIdleConnections?: () => void; closeAllConnections?: () => void };
      const grace = setTimeout(() => {
        logger.warn({ graceMs: config.api.shutdownGraceMs }, 'in-flight requests outlived the grace period; closing their connections');
        http.closeAllConnections?.();
      }, config.api.shutdownGraceMs);
      // A keep-alive connection whose request finishes after close() would otherwise linger
      // until the client's idle timeout: close each one as soon as it turns idle.
      const sweep = setInterval(() => http.closeIdleConnections?.(), 20);
      await closeServer(server);
      clearInterval(sweep);
      clearTimeout(grace);
    });
    await serveAdminPort({ config, requested: values['admin-port'] !== undefined, registry, db: handle.db, logger, releasers });
    logger.info({ port, host: config.host }, 'api listening');
    // A line on stdout for scripts that start the API on port 0.
    process.stdout.write(`evalbox api listening on http://${config.host}:${port}\n`);

    logger.info({ signal: await stopped }, 'shutting down');
    // LIFO: stop intake (admin, then public server, which waits for in-flight requests), then the pool.
    await releasers.releaseAll();
    return 0;
  },
};
