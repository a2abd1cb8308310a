// `evalbox api`: the composition root of the ingest API process. Builds its parts from the
// validated config, serves the public and admin ports, and shuts down in LIFO order on SIGTERM.
import { CONNECTION_HELP, CONNECTION_OPTIONS, parse, type Command } from '../cli/args.js';
import { loadConfig, requireSetting, optionsHelp, settingFlags } from '../config.js';
import { createDb } from '../db/index.js';
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

Options (flags override the environment, which overrides the file EVALBOX_CONFIG_FILE):
${optionsHelp('api')}

Logs carry evaluation and application ids, never prompt or response text.
${CONNECTION_HELP}`,
  async run(argv) {
    const { values } = parse(argv, {
      // Every setting of the process is a flag; the configuration lists them.
      ...settingFlags('api'),
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
