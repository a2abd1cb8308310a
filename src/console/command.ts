// `evalbox console`: the composition root of the web console. Builds the app from the validated
// config, refuses to listen beyond loopback without an operator token, and shuts down in LIFO
// order on SIGTERM.
import { CONNECTION_HELP, CONNECTION_OPTIONS, parse, UsageError, type Command } from '../cli/args.js';
import { loadConfig, requireSetting } from '../config.js';
import { createDb } from '../db/index.js';
import { ConfigError } from '../errors.js';
import { Releasers, stopSignal } from '../lifecycle.js';
import { createLogger } from '../logging.js';
import { closeServer, listen } from '../metrics.js';
import { createConsoleApp } from './app.js';
import { isLoopback } from './auth.js';

export const consoleCommand: Command = {
  name: 'console',
  summary: 'run the web console: pipeline, evaluations, quality, dead letters',
  help: `Usage: evalbox console [--port P] [--host H]

Serves the web console: the live pipeline (stage counts, outbox backlog, relay shards, consumer
lag, judge endpoints, horizon blocker), evaluations with their scores and reasoning, quality
charts, and dead letters and parked rows with redrive. Operators sign in with the console token;
an application's API key sees only that application's evaluations.

Options (flags override the environment):
  --port P             port (env EVALBOX_CONSOLE_PORT, default 8090; 0 picks a free port)
  --host H             interface to bind (env EVALBOX_HOST, default 127.0.0.1)
  --token T            operator token (env EVALBOX_CONSOLE_TOKEN); required unless --host is
                       loopback, where without it the console is open to operators
  --scorer-group G     the scorers' consumer group, for the lag table (env EVALBOX_SCORER_GROUP,
                       default evalbox-scorer)
  --scorer-metrics URLS  the scorers' admin /metrics URLs, comma-separated, for judge endpoint
                       state and time lag (env EVALBOX_CONSOLE_SCORER_METRICS)
  --refresh-seconds N  pipeline page refresh interval (env EVALBOX_CONSOLE_REFRESH_SECONDS, default 5)
  --secure-cookie      mark the session cookie Secure (serve behind HTTPS)
                       (env EVALBOX_CONSOLE_SECURE_COOKIE=1)
  --topic-events T, --topic-dlt T   (env EVALBOX_TOPIC_EVENTS, EVALBOX_TOPIC_DLT)
${CONNECTION_HELP}`,
  async run(argv) {
    const { values } = parse(argv, {
      ...CONNECTION_OPTIONS,
      port: { type: 'string' },
      host: { type: 'string' },
      token: { type: 'string' },
      'scorer-group': { type: 'string' },
      'scorer-metrics': { type: 'string' },
      'refresh-seconds': { type: 'string' },
      'secure-cookie': { type: 'boolean' },
      'topic-events': { type: 'string' },
      'topic-dlt': { type: 'string' },
    });
    if (values.help) {
      process.stdout.write(`${this.help}\n`);
      return 0;
    }
    const stopped = stopSignal();
    const config = loadConfig(process.env, values);
    const portText = values.port ?? process.env.EVALBOX_CONSOLE_PORT ?? '8090';
    const port = Number(portText);
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError(`--port must be a port number, got "${portText}"`);
    const refreshText = values['refresh-seconds'] ?? process.env.EVALBOX_CONSOLE_REFRESH_SECONDS ?? '5';
    const refreshSeconds = Number(refreshText);
    if (!Number.isInteger(refreshSeconds) || refreshSeconds < 1) throw new UsageError(`--refresh-seconds must be a positive integer, got "${refreshText}"`);
    const token = values.token ?? process.env.EVALBOX_CONSOLE_TOKEN ?? '';
    if (!token && !isLoopback(config.host)) {
      throw new ConfigError(`EVALBOX_CONSOLE_TOKEN is required when the console listens on ${config.host} (it is optional only on loopback)`);
    }
    if (token && token.length < 16) throw new ConfigError('EVALBOX_CONSOLE_TOKEN must be at least 16 characters');
    const metricsUrls = (values['scorer-metrics'] ?? process.env.EVALBOX_CONSOLE_SCORER_METRICS ?? '')
      .split(',')
      .map((u) => u.trim())
      .filter(Boolean);
    for (const url of metricsUrls) if (!/^https?:\/\//.test(url)) throw new UsageError(`--scorer-metrics: "${url}" is not an http(s) URL`);

    const logger = createLogger({ level: config.logLevel, name: 'evalbox-console' });
    const handle = createDb(requireSetting(config.databaseUrl, 'DATABASE_URL'), { max: 5, applicationName: 'evalbox-console' });
    const releasers = new Releasers();
    releasers.add(() => handle.close());
    const consoleApp = createConsoleApp({
      db: handle.db,
      config,
      logger,
      operatorToken: token || undefined,
      scorerGroup: String(values['scorer-group'] ?? process.env.EVALBOX_SCORER_GROUP ?? 'evalbox-scorer'),
      scorerMetricsUrls: metricsUrls,
      refreshSeconds,
      secureCookie: values['secure-cookie'] === true || process.env.EVALBOX_CONSOLE_SECURE_COOKIE === '1',
    });
    releasers.add(() => consoleApp.close());
    const { server, port: bound } = await listen(consoleApp.app, port, config.host);
    releasers.add(() => closeServer(server));
    logger.info({ port: bound, host: config.host, operatorToken: Boolean(token) }, 'console listening');
    const shownHost = config.host.includes(':') ? `[${config.host}]` : config.host;
    process.stdout.write(`evalbox console listening on http://${shownHost}:${bound}\n`);

    logger.info({ signal: await stopped }, 'shutting down');
    await releasers.releaseAll();
    return 0;
  },
};
