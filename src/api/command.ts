// `evalbox api`: the composition root of the ingest API process. Builds its parts from the
// validated config, serves the public and admin ports, and shuts down in LIFO order on SIGTERM.
import { CONNECTION_HELP, type Command } from '../cli/args.js';
import { requireSetting, optionsHelp } from '../config.js';
import { createDb } from '../db/index.js';
import { createPublishedDimensionRegistry } from '../dimensions.js';
import { closeServer, createRegistry } from '../metrics.js';
import { startProcess } from '../process.js';
import { createApiApp } from './app.js';
import { createKeyResolver } from './auth.js';
import { serveApi } from './server.js';

export const apiCommand: Command = {
  name: 'api',
  summary: 'run the ingest REST API',
  help: `Usage: evalbox api [--port P] [--admin-port Q] [--host H]

Serves POST /v1/evaluations, POST /v1/evaluations:batch, GET /v1/evaluations[/{id}],
DELETE /v1/evaluations/{id}, POST /v1/evaluations/{id}/scores, GET /v1/evaluations:stream
(server-sent events), GET /v1/dimensions and GET /openapi.json on --port, and /healthz,
/readyz, /metrics on --admin-port. SIGTERM stops intake, ends the results streams, finishes
in-flight requests and exits 0.

Options (flags override the environment, which overrides the file EVALBOX_CONFIG_FILE):
${optionsHelp('api')}

Logs carry request, trace and evaluation ids, never prompt or response text (EVALBOX_LOG_CONTENT).
${CONNECTION_HELP}`,
  async run(argv) {
    const running = await startProcess(this, argv, 'api');
    if (!running) return 0;
    const { config, logger, releasers } = running;
    const handle = createDb(requireSetting(config.databaseUrl, 'DATABASE_URL'), {
      max: config.api.poolSize,
      applicationName: 'evalbox-api',
      statementTimeoutMs: config.api.statementTimeoutMs,
      idleInTransactionTimeoutMs: config.api.idleInTransactionTimeoutMs,
    });
    const registry = createRegistry('api');
    const keys = createKeyResolver(handle.db, { ttlMs: config.api.keyCacheTtlMs });
    // Built-in dimensions plus the judge rubrics the scorers published.
    const dimensions = await createPublishedDimensionRegistry(handle.db, { onError: (error) => logger.warn({ err: error }, 'dimension refresh failed') });
    // Ends the open results streams at shutdown, so closing the server does not wait out the grace period for them.
    const stopping = new AbortController();
    const app = createApiApp({ db: handle.db, pool: handle.pool, config, registry, logger, dimensions, keys, stopping: stopping.signal });

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
      stopping.abort();
      await closeServer(server);
      clearInterval(sweep);
      clearTimeout(grace);
    });
    await running.serveAdmin(registry, handle.db);
    logger.info({ port, host: config.host }, 'api listening');
    // A line on stdout for scripts that start the API on port 0.
    process.stdout.write(`evalbox api listening on http://${config.host}:${port}\n`);

    // LIFO: stop intake (admin, then public server, which waits for in-flight requests), then the pool.
    return running.untilStopped();
  },
};
