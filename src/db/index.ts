// The database handle every process shares: one pg Pool wrapped by Kysely.
import { Kysely, PostgresDialect, Migrator, type MigrationResult } from 'kysely';
import pg from 'pg';
import { classifyPgError } from '../errors.js';
import { STARTUP_BACKOFF, withRetry, type BackoffPolicy } from '../retry.js';
import { migrations } from '../../db/migrations/index.js';
import type { Database } from './types.js';

export type { Database } from './types.js';
export type Db = Kysely<Database>;

// bigint (int8) and numeric come back as strings by default; keep int8 as string to avoid
// silent precision loss on seq values, but parse counts where the query casts them to int.

export interface DbHandle {
  db: Db;
  pool: pg.Pool;
  close(): Promise<void>;
}

/**
 * TCP keepalive for connections to Postgres: a connection whose peer vanished (a failover, a cut
 * link) errors within about a minute instead of waiting forever for an answer.
 */
export const TCP_KEEPALIVE = { keepAlive: true, keepAliveInitialDelayMillis: 10_000 } as const;

export function createDb(
  databaseUrl: string,
  options: {
    max?: number;
    applicationName?: string;
    connectionTimeoutMs?: number;
    statementTimeoutMs?: number;
    idleInTransactionTimeoutMs?: number;
    keepAlive?: boolean;
  } = {},
): DbHandle {
  const pool = new pg.Pool({
    connectionString: databaseUrl,
    max: options.max ?? 10,
    application_name: options.applicationName ?? 'evalbox',
    connectionTimeoutMillis: options.connectionTimeoutMs ?? 10_000,
    // Set per connection at startup: Postgres cancels a statement (57014) that runs longer.
    ...(options.statementTimeoutMs ? { statement_timeout: options.statementTimeoutMs } : {}),
    // Postgres ends a session left idle inside a transaction for longer (a process paused or hung
    // between two statements of a transaction): its locks and its hold on the snapshot horizon,
    // which every relay of the cluster reads below, do not outlive it.
    ...(options.idleInTransactionTimeoutMs ? { idle_in_transaction_session_timeout: options.idleInTransactionTimeoutMs } : {}),
    ...(options.keepAlive ? TCP_KEEPALIVE : {}),
  });
  // A client that loses its connection must not crash the process: idle in the pool, the pool
  // replaces it; checked out (between two queries of a transaction, say), its next query fails
  // and the caller's error handling decides. Without a listener, pg's 'error' event is fatal.
  pool.on('error', () => {});
  pool.on('connect', (client) => client.on('error', () => {}));
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  return {
    db,
    pool,
    // Kysely's destroy ends the pool it was given.
    close: () => db.destroy(),
  };
}

export interface MigrateOutcome {
  error?: unknown;
  results: MigrationResult[];
}

/** Applies pending migrations in one transaction under Kysely's advisory lock. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- the migrator works on any schema
export async function migrateToLatest(db: Kysely<any>): Promise<MigrateOutcome> {
  const migrator = new Migrator({ db, provider: { getMigrations: async () => migrations } });
  const { error, results } = await migrator.migrateToLatest();
  return { error, results: results ?? [] };
}

/**
 * Waits until the database answers a query: a process started while Postgres restarts or
 * replays its WAL ("the database system is not yet accepting connections") waits, with backoff,
 * instead of exiting. A permanent failure (a wrong password, no such database) fails at once.
 */
export async function waitForDatabase(
  handle: Pick<DbHandle, 'pool'>,
  options: { policy?: BackoffPolicy; signal?: AbortSignal; onRetry?: (error: unknown, attempt: number, delayMs: number) => void } = {},
): Promise<void> {
  await withRetry(
    () =>
      handle.pool.query('SELECT 1').then(
        () => undefined,
        (error: unknown) => {
          throw classifyPgError(error);
        },
      ),
    options.policy ?? STARTUP_BACKOFF,
    { signal: options.signal, onRetry: options.onRetry },
  );
}
