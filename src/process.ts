// The start and the end every long-running process command shares (api, relay, scorer): flags
// generated from the configuration, --help, the stop signal, the validated configuration, the
// logger, tracing (started first, flushed last), the admin port, and shutdown in LIFO order.
import type { Registry } from 'prom-client';
import { CONNECTION_OPTIONS, parse, type Command, type Options } from './cli/args.js';
import { loadConfig, settingFlags, type Config, type Flags } from './config.js';
import type { Db } from './db/index.js';
import { Releasers, serveAdminPort, stopSignal } from './lifecycle.js';
import { createLogger, type Logger } from './logging.js';
import { startTracing } from './tracing.js';

export type ProcessScope = 'api' | 'relay' | 'scorer';
export type ParsedFlags = Record<string, string | boolean | undefined>;

/**
 * What the relay's environment adds at start (both act only when the process starts, so the relay
 * cannot set them itself; `evalbox dev`, docker-compose.yml and the Kubernetes manifest do): a
 * 4 MB young generation and two glibc arenas for librdkafka's threads. Peak RSS draining 50,000
 * small rows 196–206 → 173–180 MB, 400 rows of 256 kB 259–260 → 179–199 MB, throughput unchanged
 * (bench/RESULTS.md, docs/relay.md "Memory").
 */
export function relayRuntimeEnv(env: NodeJS.ProcessEnv): Record<string, string> {
  return {
    NODE_OPTIONS: [env.NODE_OPTIONS, '--max-semi-space-size=4'].filter(Boolean).join(' '),
    MALLOC_ARENA_MAX: env.MALLOC_ARENA_MAX ?? '2',
  };
}

export interface RunningProcess {
  values: ParsedFlags;
  config: Config;
  logger: Logger;
  /** Shutdown steps, run last registered first; flushing spans is the very last. */
  releasers: Releasers;
  /** Serves /healthz, /readyz and /metrics when an admin port is configured or asked for. */
  serveAdmin(registry: Registry, db: Db): Promise<void>;
  /** Waits for SIGTERM or SIGINT, runs the releasers, and gives the exit code. */
  untilStopped(): Promise<number>;
}

/**
 * Parses a process command's flags (every setting of its scope, the connection flags, and
 * `extraFlags`), prints --help (then resolves undefined), and builds the process's common parts.
 * `configFlags` maps the parsed flags to the configuration's names where a command spells one
 * differently.
 */
export async function startProcess(
  command: Command,
  argv: string[],
  scope: ProcessScope,
  options: { extraFlags?: Options; configFlags?: (values: ParsedFlags) => Flags } = {},
): Promise<RunningProcess | undefined> {
  const { values } = parse(argv, { ...settingFlags(scope), ...CONNECTION_OPTIONS, ...options.extraFlags }) as { values: ParsedFlags };
  if (values.help) {
    process.stdout.write(`${command.help}\n`);
    return undefined;
  }
  // Before anything async: an early signal still stops the process cleanly.
  const stopped = stopSignal();
  const config = loadConfig(process.env, options.configFlags ? options.configFlags(values) : values);
  const logger = createLogger({ level: config.logLevel, name: `evalbox-${scope}`, logContent: config.telemetry.logContent });
  const releasers = new Releasers();
  releasers.add(await startTracing(config.telemetry, `evalbox-${scope}`, logger));
  return {
    values,
    config,
    logger,
    releasers,
    serveAdmin: (registry, db) => serveAdminPort({ config, requested: values['admin-port'] !== undefined, registry, db, logger, releasers }),
    async untilStopped() {
      logger.info({ signal: await stopped }, 'shutting down');
      await releasers.releaseAll();
      logger.info('stopped');
      return 0;
    },
  };
}
