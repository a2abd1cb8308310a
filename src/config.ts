// Configuration: environment variables prefixed EVALBOX_ (plus DATABASE_URL and KAFKA_BROKERS),
// overridden by command-line flags. Every process builds its parts from one validated Config.
import os from 'node:os';
import path from 'node:path';
import { ConfigError } from './errors.js';

export interface Topics {
  events: string;
  scores: string;
  dlt: string;
}

export interface Config {
  databaseUrl: string;
  kafkaBrokers: string;
  topics: Topics;
  /** Where the local stack keeps its jars, data and logs. */
  cacheDir: string;
  logLevel: string;
  /** 0 means "do not serve the admin endpoints". */
  adminPort: number;
  host: string;
  /** Interface of the admin port: loopback unless set (Kubernetes sets 0.0.0.0 for probes and scraping). */
  adminHost: string;
  api: {
    port: number;
    bodyLimitBytes: number;
    /** Largest number of items in one batch request. */
    batchLimit: number;
    /** Database connections of the API process. */
    poolSize: number;
    /** How long an API-key lookup is cached in-process (a revoked key works this much longer). */
    keyCacheTtlMs: number;
    /** On SIGTERM, how long in-flight requests may take before their connections are cut. */
    shutdownGraceMs: number;
    /** Concurrent POSTs written by one statement in one transaction (see docs/api.md). */
    groupCommit: { enabled: boolean; windowMs: number; maxRows: number };
    /** How long an Idempotency-Key is honoured; after that the same key creates a new evaluation. */
    idempotencyTtlHours: number;
    /** Node server timeouts against slow clients (see docs/api.md, "Limits"). */
    headersTimeoutMs: number;
    requestTimeoutMs: number;
    keepAliveTimeoutMs: number;
    /** A connection on which nothing arrives (a body that stops) for this long is closed. */
    bodyIdleTimeoutMs: number;
    /** Postgres cancels an API statement that runs (or waits on a lock) longer than this. */
    statementTimeoutMs: number;
    /** Per application: sustained evaluations (or reads) per second, and the burst above it. */
    ratePerSecond: number;
    rateBurst: number;
    /** Per application: requests in flight at once. */
    concurrencyPerApp: number;
    /** Per application: database connections held at once (its fair share of the pool). */
    poolSharePerApp: number;
    /** Seals list cursors; every replica must share it (default: derived from the database URL). */
    cursorSecret: string;
  };
  relay: {
    batchSize: number;
    wakeup: 'notify' | 'poll';
    pollMinMs: number;
    pollMaxMs: number;
    leaseTtlMs: number;
    heartbeatMs: number;
    retentionHours: number;
    partitionsAhead: number;
    /** Prefix of each shard producer's transactional.id; empty: derived from the database name. */
    transactionalIdPrefix: string;
  };
}

export type Env = Record<string, string | undefined>;
export type Flags = Record<string, string | boolean | undefined>;

export const DEFAULT_TOPICS: Topics = {
  events: 'llm-evaluation-events',
  scores: 'llm-evaluation-scores',
  dlt: 'llm-evaluation-events.DLT',
};

export function defaultCacheDir(env: Env = process.env): string {
  return env.EVALBOX_CACHE_DIR ?? path.join(env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'evalbox');
}

/** Reads one setting: a flag (kebab-case) wins over EVALBOX_<NAME>, which wins over the default. */
function reader(env: Env, flags: Flags) {
  const raw = (flag: string, envName: string): string | undefined => {
    const fromFlag = flags[flag];
    if (typeof fromFlag === 'string') return fromFlag;
    return env[envName];
  };
  return {
    string(flag: string, envName: string, fallback: string): string {
      return raw(flag, envName) ?? fallback;
    },
    int(flag: string, envName: string, fallback: number, min = 0): number {
      const value = raw(flag, envName);
      if (value === undefined || value === '') return fallback;
      const parsed = Number(value);
      if (!Number.isInteger(parsed) || parsed < min) {
        throw new ConfigError(`--${flag} / ${envName} must be an integer >= ${min}, got "${value}"`);
      }
      return parsed;
    },
    oneOf<T extends string>(flag: string, envName: string, allowed: readonly T[], fallback: T): T {
      const value = raw(flag, envName) ?? fallback;
      if (!(allowed as readonly string[]).includes(value)) {
        throw new ConfigError(`--${flag} / ${envName} must be one of ${allowed.join(', ')}, got "${value}"`);
      }
      return value as T;
    },
  };
}

export function loadConfig(env: Env = process.env, flags: Flags = {}): Config {
  const read = reader(env, flags);
  const databaseUrl = read.string('database-url', 'DATABASE_URL', '');
  const kafkaBrokers = read.string('kafka-brokers', 'KAFKA_BROKERS', '');
  return {
    databaseUrl,
    kafkaBrokers,
    topics: {
      events: read.string('topic-events', 'EVALBOX_TOPIC_EVENTS', DEFAULT_TOPICS.events),
      scores: read.string('topic-scores', 'EVALBOX_TOPIC_SCORES', DEFAULT_TOPICS.scores),
      dlt: read.string('topic-dlt', 'EVALBOX_TOPIC_DLT', DEFAULT_TOPICS.dlt),
    },
    cacheDir: read.string('cache-dir', 'EVALBOX_CACHE_DIR', defaultCacheDir(env)),
    logLevel: read.string('log-level', 'EVALBOX_LOG_LEVEL', 'info'),
    adminPort: read.int('admin-port', 'EVALBOX_ADMIN_PORT', 0),
    host: read.string('host', 'EVALBOX_HOST', '127.0.0.1'),
    adminHost: read.string('admin-host', 'EVALBOX_ADMIN_HOST', '127.0.0.1'),
    api: {
      port: read.int('port', 'EVALBOX_API_PORT', 8080),
      bodyLimitBytes: read.int('body-limit', 'EVALBOX_API_BODY_LIMIT', 1024 * 1024, 1),
      batchLimit: read.int('batch-limit', 'EVALBOX_API_BATCH_LIMIT', 100, 1),
      poolSize: read.int('pool-size', 'EVALBOX_API_POOL_SIZE', 20, 1),
      keyCacheTtlMs: read.int('key-cache-ttl-ms', 'EVALBOX_API_KEY_CACHE_TTL_MS', 10_000, 0),
      shutdownGraceMs: read.int('shutdown-grace-ms', 'EVALBOX_SHUTDOWN_GRACE_MS', 10_000, 0),
      groupCommit: {
        enabled: read.oneOf('group-commit', 'EVALBOX_API_GROUP_COMMIT', ['on', 'off'] as const, 'on') === 'on',
        windowMs: read.int('group-commit-window-ms', 'EVALBOX_API_GROUP_COMMIT_WINDOW_MS', 1, 0),
        maxRows: read.int('group-commit-max-rows', 'EVALBOX_API_GROUP_COMMIT_MAX_ROWS', 64, 1),
      },
      idempotencyTtlHours: read.int('idempotency-ttl-hours', 'EVALBOX_API_IDEMPOTENCY_TTL_HOURS', 24, 1),
      headersTimeoutMs: read.int('headers-timeout-ms', 'EVALBOX_API_HEADERS_TIMEOUT_MS', 10_000, 1),
      requestTimeoutMs: read.int('request-timeout-ms', 'EVALBOX_API_REQUEST_TIMEOUT_MS', 30_000, 1),
      keepAliveTimeoutMs: read.int('keep-alive-timeout-ms', 'EVALBOX_API_KEEP_ALIVE_TIMEOUT_MS', 5_000, 1),
      bodyIdleTimeoutMs: read.int('body-idle-timeout-ms', 'EVALBOX_API_BODY_IDLE_TIMEOUT_MS', 10_000, 1),
      statementTimeoutMs: read.int('statement-timeout-ms', 'EVALBOX_API_STATEMENT_TIMEOUT_MS', 5_000, 0),
      ratePerSecond: read.int('rate-per-second', 'EVALBOX_API_RATE_PER_SECOND', 500, 1),
      rateBurst: read.int('rate-burst', 'EVALBOX_API_RATE_BURST', 1_000, 1),
      concurrencyPerApp: read.int('concurrency-per-app', 'EVALBOX_API_CONCURRENCY_PER_APP', 32, 1),
      poolSharePerApp: read.int('pool-share-per-app', 'EVALBOX_API_POOL_SHARE_PER_APP', 0, 0),
      cursorSecret: read.string('cursor-secret', 'EVALBOX_API_CURSOR_SECRET', ''),
    },
    relay: {
      batchSize: read.int('batch-size', 'EVALBOX_RELAY_BATCH_SIZE', 2000, 1),
      wakeup: read.oneOf('wakeup', 'EVALBOX_RELAY_WAKEUP', ['notify', 'poll'] as const, 'notify'),
      pollMinMs: read.int('poll-min-ms', 'EVALBOX_RELAY_POLL_MIN_MS', 5, 1),
      pollMaxMs: read.int('poll-max-ms', 'EVALBOX_RELAY_POLL_MAX_MS', 500, 1),
      leaseTtlMs: read.int('lease-ttl-ms', 'EVALBOX_RELAY_LEASE_TTL_MS', 3000, 100),
      heartbeatMs: read.int('heartbeat-ms', 'EVALBOX_RELAY_HEARTBEAT_MS', 1000, 50),
      retentionHours: read.int('retention-hours', 'EVALBOX_OUTBOX_RETENTION_HOURS', 72, 1),
      partitionsAhead: read.int('partitions-ahead', 'EVALBOX_OUTBOX_PARTITIONS_AHEAD', 3, 1),
      transactionalIdPrefix: read.string('transactional-id-prefix', 'EVALBOX_RELAY_TRANSACTIONAL_ID_PREFIX', ''),
    },
  };
}

/** Fails with a clear message when a process needs a setting that is missing. */
export function requireSetting(value: string, name: string): string {
  if (!value) throw new ConfigError(`${name} is not set (run \`eval "$(npx evalbox stack up)"\` or export it)`);
  return value;
}
