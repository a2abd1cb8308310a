// The lifecycle every long-running command shares: the stop signal, the admin port, and shutdown
// as a LIFO list of releasers (stop intake, drain, flush, commit, release leases, end the pool).
import { sql } from 'kysely';
import type { Registry } from 'prom-client';
import type { Config } from './config.js';
import type { Db } from './db/index.js';
import type { Logger } from './logging.js';
import { serveAdmin } from './metrics.js';

/** Resolves with the first SIGTERM or SIGINT. Call it first, so an early signal still stops cleanly. */
export function stopSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });
}

export class Releasers {
  private readonly steps: (() => Promise<void> | void)[] = [];

  /** Registers a step; steps run in reverse order of registration. */
  add(step: () => Promise<void> | void): void {
    this.steps.push(step);
  }

  /**
   * Runs every step, last registered first. A step that throws does not keep the later ones from
   * running (the pool must still close when the producer's flush fails); once all have run, the
   * first error is rethrown. `onError` sees every failure, e.g. to log the ones after the first.
   */
  async releaseAll(onError?: (error: unknown) => void): Promise<void> {
    const failures: unknown[] = [];
    for (const step of this.steps.splice(0).reverse()) {
      try {
        await step();
      } catch (error) {
        failures.push(error);
        onError?.(error);
      }
    }
    if (failures.length > 0) throw failures[0];
  }
}

/** A dependency a readiness check found unavailable; /readyz names it. */
export class DependencyUnavailable extends Error {
  constructor(
    readonly dependency: string,
    cause: unknown,
  ) {
    super(`${dependency} unavailable`, { cause });
  }
}

/** Serves /healthz, /readyz (the database answers) and /metrics when an admin port is configured. */
export async function serveAdminPort(options: {
  config: Config;
  requested: boolean;
  registry: Registry;
  db: Db;
  logger: Logger;
  releasers: Releasers;
}): Promise<void> {
  const { config } = options;
  if (!config.adminPort && !options.requested) return;
  // Readiness names the dependency that failed; the raw error (hosts, ports, credentials in a
  // message) goes to the log only.
  const ready = async () => {
    try {
      await sql`SELECT 1`.execute(options.db);
    } catch (error) {
      options.logger.warn({ err: { type: (error as Error).name, code: (error as { code?: unknown }).code } }, 'readiness: the database does not answer');
      throw new DependencyUnavailable('database', error);
    }
  };
  const admin = await serveAdmin(options.registry, ready, config.adminPort, config.adminHost);
  options.releasers.add(() => admin.close());
  options.logger.info({ adminPort: admin.port }, 'admin port listening');
}
