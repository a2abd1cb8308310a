// Configuration: environment variables prefixed EVALBOX_ (plus DATABASE_URL, KAFKA_BROKERS and the
// standard OTEL_* tracing variables), overridden by command-line flags. Every process builds its
// parts from one validated Config.
import fs from 'node:fs';
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
    groupCommit: { enabled: boolean; windowMs: number; maxRows: number; maxInFlight: number };
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
    /** Postgres ends an API session idle inside a transaction for longer (a paused process): see src/db. */
    idleInTransactionTimeoutMs: number;
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
    /** Most shards one relay leads at once. */
    maxShards: number;
    /** Partitions of the topics the relay creates at start. */
    topicPartitions: number;
    /** Most payload bytes one batch reads (at least one row): bounds the relay's memory at any backlog. */
    batchBytes: number;
    /** Backoff of a failed batch and of a failed database read: first ceiling and cap (full jitter). */
    retryBaseMs: number;
    retryMaxMs: number;
    /** How long rows for a topic the broker does not know are retried before they are parked. */
    unknownTopicParkMs: number;
    /** Postgres statement timeout of the relay's queries. */
    statementTimeoutMs: number;
  };
  scorer: {
    group: string;
    orderingKey: 'evaluation' | 'kafka-key';
    maxInFlight: number;
    maxAttempts: number;
    maxRetryAgeMs: number;
    retryBaseMs: number;
    poolSize: number;
    /** On SIGTERM, how long in-flight scoring may take before it is abandoned (and redelivered). */
    graceMs: number;
    /** Postgres ends a scorer session idle inside a transaction for longer (a paused process): see src/db. */
    idleInTransactionTimeoutMs: number;
  };
  /** The web console's operator token (src/console reads its other settings itself). */
  console: { token: string };
  /** The LLM judge endpoint (consumers/judge reads the same variables, or EVALBOX_JUDGE_CONFIG). */
  /** Traces and log content (see docs/operations.md, "Tracing and logs"). */
  telemetry: {
    /** `otlp` turns tracing on; `none` (the default) leaves the OpenTelemetry SDK unloaded. */
    tracesExporter: 'none' | 'otlp';
    /** Base URL of the OTLP/HTTP receiver (the SDK appends /v1/traces); empty: the SDK's default. */
    otlpEndpoint: string;
    otlpProtocol: 'http/protobuf' | 'http/json';
    /** Empty: the process's own name (evalbox-api, evalbox-relay, evalbox-scorer). */
    serviceName: string;
    /** Whether prompt, response, context and reference text may appear in logs (never by default). */
    logContent: boolean;
  };
  judge: {
    baseUrl: string;
    model: string;
    apiKey: string;
    configFile: string;
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

/** One setting as the configuration read it: where from, and what it is. */
export interface SettingRecord {
  flag: string;
  env: string;
  kind: 'string' | 'integer' | 'one of';
  value: string | number;
  defaultValue: string | number;
  source: 'flag' | 'env' | 'file' | 'default';
  min?: number;
  allowed?: readonly string[];
}

/** What each setting is, for the generated --help and `evalbox config`. */
const DESCRIPTIONS: Record<string, string> = {
  DATABASE_URL: 'Postgres connection URL',
  KAFKA_BROKERS: 'Kafka bootstrap servers',
  EVALBOX_TOPIC_EVENTS: 'topic of evaluation.created',
  EVALBOX_TOPIC_SCORES: 'topic of evaluation.scored',
  EVALBOX_TOPIC_DLT: 'dead-letter topic',
  EVALBOX_CACHE_DIR: 'where the local stack keeps jars, data and logs',
  EVALBOX_LOG_LEVEL: 'pino log level',
  EVALBOX_ADMIN_PORT: 'port of /healthz, /readyz, /metrics (0 = none)',
  EVALBOX_HOST: 'interface of the public port',
  EVALBOX_ADMIN_HOST: 'interface of the admin port',
  EVALBOX_API_PORT: 'public port (0 picks a free one)',
  EVALBOX_API_BODY_LIMIT: 'largest request body, bytes',
  EVALBOX_API_BATCH_LIMIT: 'most items per batch request',
  EVALBOX_API_POOL_SIZE: 'database connections',
  EVALBOX_API_KEY_CACHE_TTL_MS: 'how long a key lookup is cached (a revoked key works this much longer)',
  EVALBOX_SHUTDOWN_GRACE_MS: 'on SIGTERM, time in-flight requests get before their connections are cut',
  EVALBOX_API_GROUP_COMMIT: 'write concurrent POSTs with one statement and one commit',
  EVALBOX_API_GROUP_COMMIT_WINDOW_MS: 'longest a request waits for others to share its commit (0 = one event-loop turn)',
  EVALBOX_API_GROUP_COMMIT_MAX_ROWS: 'a group is written once it holds this many rows',
  EVALBOX_API_GROUP_MAX_IN_FLIGHT: 'most groups written at once; requests arriving meanwhile form the next group (0 = no bound)',
  EVALBOX_API_IDEMPOTENCY_TTL_HOURS: 'how long an Idempotency-Key is honoured',
  EVALBOX_API_HEADERS_TIMEOUT_MS: 'time a client has to send the request headers',
  EVALBOX_API_REQUEST_TIMEOUT_MS: 'time a client has to send the whole request',
  EVALBOX_API_KEEP_ALIVE_TIMEOUT_MS: 'idle keep-alive connection lifetime',
  EVALBOX_API_BODY_IDLE_TIMEOUT_MS: 'a connection silent this long mid-body is closed',
  EVALBOX_API_STATEMENT_TIMEOUT_MS: 'Postgres statement timeout of API queries',
  EVALBOX_API_IDLE_IN_TRANSACTION_TIMEOUT_MS: 'Postgres ends an API session idle inside a transaction this long (a paused process)',
  EVALBOX_API_RATE_PER_SECOND: 'per application: sustained requests per second (over a quota: 429 with Retry-After)',
  EVALBOX_API_RATE_BURST: 'per application: burst above the rate',
  EVALBOX_API_CONCURRENCY_PER_APP: 'per application: requests in flight',
  EVALBOX_API_POOL_SHARE_PER_APP: 'per application: database connections held at once (0 = a quarter of the pool)',
  EVALBOX_RELAY_BATCH_SIZE: 'outbox rows per batch',
  EVALBOX_RELAY_WAKEUP: 'LISTEN nudges plus adaptive poll, or poll only',
  EVALBOX_RELAY_POLL_MIN_MS: 'poll interval after work',
  EVALBOX_RELAY_POLL_MAX_MS: 'poll interval ceiling when idle',
  EVALBOX_RELAY_LEASE_TTL_MS: 'shard lease lifetime; on SIGTERM, the longest the in-flight batches may take',
  EVALBOX_RELAY_HEARTBEAT_MS: 'lease renewal period',
  EVALBOX_OUTBOX_RETENTION_HOURS: 'how long outbox partitions are kept',
  EVALBOX_OUTBOX_PARTITIONS_AHEAD: 'outbox partitions created ahead',
  EVALBOX_RELAY_TRANSACTIONAL_ID_PREFIX: "prefix of each shard producer's transactional.id (default: from the database name)",
  EVALBOX_RELAY_MAX_SHARDS: 'most shards this relay leads',
  EVALBOX_TOPIC_PARTITIONS: 'partitions of the topics the relay creates',
  EVALBOX_RELAY_BATCH_BYTES: 'most payload bytes per batch (at least one row): bounds memory at any backlog',
  EVALBOX_RELAY_RETRY_BASE_MS: 'first backoff ceiling of a failed batch or database read',
  EVALBOX_RELAY_RETRY_MAX_MS: 'backoff cap of a failed batch or database read',
  EVALBOX_RELAY_UNKNOWN_TOPIC_PARK_MS: 'how long rows for a topic the broker does not know are retried before they are parked',
  EVALBOX_RELAY_STATEMENT_TIMEOUT_MS: "Postgres statement timeout of the relay's queries",
  EVALBOX_SCORER_GROUP: 'consumer group',
  EVALBOX_SCORER_ORDERING_KEY: 'what orders work within a partition',
  EVALBOX_SCORER_MAX_IN_FLIGHT: 'evaluations in flight per partition before it pauses',
  EVALBOX_SCORER_MAX_ATTEMPTS: 'attempts per dimension for retryable failures',
  EVALBOX_SCORER_MAX_RETRY_AGE_MS: 'how long a dimension is retried',
  EVALBOX_SCORER_RETRY_BASE_MS: 'first backoff ceiling',
  EVALBOX_SCORER_POOL_SIZE: 'database connections',
  EVALBOX_SCORER_GRACE_MS: 'on SIGTERM, time in-flight scoring gets before it is abandoned',
  EVALBOX_SCORER_IDLE_IN_TRANSACTION_TIMEOUT_MS: 'Postgres ends a scorer session idle inside a transaction this long (a paused process)',
  EVALBOX_CONSOLE_TOKEN: 'operator token of the web console (secret)',
  EVALBOX_API_CURSOR_SECRET: 'key the API seals list cursors with; the same on every replica (secret; default derived from the database URL)',
  OTEL_TRACES_EXPORTER: 'otlp: export traces over OTLP/HTTP; none: tracing off, the SDK not even loaded',
  OTEL_EXPORTER_OTLP_ENDPOINT: 'OTLP/HTTP receiver base URL, /v1/traces is appended (unset: http://localhost:4318)',
  OTEL_EXPORTER_OTLP_PROTOCOL: 'OTLP encoding',
  OTEL_SERVICE_NAME: 'service.name of the spans (unset: evalbox-api, evalbox-relay or evalbox-scorer)',
  EVALBOX_LOG_CONTENT: 'on: logs may carry prompt, response, context and reference text (off: never, error paths included)',
  EVALBOX_JUDGE_BASE_URL: 'OpenAI-compatible judge endpoint',
  EVALBOX_JUDGE_MODEL: 'judge model',
  EVALBOX_JUDGE_API_KEY: 'judge API key (secret)',
  EVALBOX_JUDGE_CONFIG: 'JSON file of judge endpoints, prices and rubrics',
};

export const describeSetting = (envName: string): string => DESCRIPTIONS[envName] ?? '';

/** Settings whose values are never printed. A URL setting is printed with its password masked. */
const SECRET_SETTINGS = new Set(['EVALBOX_JUDGE_API_KEY', 'EVALBOX_CONSOLE_TOKEN', 'EVALBOX_API_CURSOR_SECRET']);

export function maskSecret(env: string, value: string | number): string {
  const text = String(value);
  if (SECRET_SETTINGS.has(env)) return text ? '****' : '';
  return text.replace(/(\/\/[^:@/]*:)[^@/]*@/, '$1****@');
}

/**
 * The optional configuration file (EVALBOX_CONFIG_FILE): a JSON object of the same variable
 * names as the environment, e.g. {"EVALBOX_RELAY_BATCH_SIZE": 500}. The environment wins over it.
 */
export function readConfigFile(env: Env): { file: string; values: Record<string, string> } | undefined {
  const file = env.EVALBOX_CONFIG_FILE;
  if (!file) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (error) {
    throw new ConfigError(`EVALBOX_CONFIG_FILE ${file}: ${(error as Error).message}`);
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new ConfigError(`EVALBOX_CONFIG_FILE ${file}: expected a JSON object of settings`);
  const values: Record<string, string> = {};
  for (const [name, value] of Object.entries(parsed)) {
    if (!/^(EVALBOX_[A-Z0-9_]+|DATABASE_URL|KAFKA_BROKERS)$/.test(name))
      throw new ConfigError(`EVALBOX_CONFIG_FILE ${file}: "${name}" is not an evalbox setting`);
    if (typeof value !== 'string' && typeof value !== 'number') throw new ConfigError(`EVALBOX_CONFIG_FILE ${file}: ${name} must be a string or a number`);
    values[name] = String(value);
  }
  return { file, values };
}

/** Reads one setting: a flag (kebab-case) wins over EVALBOX_<NAME>, then the file, then the default. */
function reader(env: Env, flags: Flags, record?: (setting: SettingRecord) => void) {
  const file = readConfigFile(env);
  const raw = (flag: string, envName: string): { value: string | undefined; source: SettingRecord['source']; where: string } => {
    const fromFlag = flags[flag];
    if (typeof fromFlag === 'string') return { value: fromFlag, source: 'flag', where: `--${flag}` };
    const fromEnv = env[envName];
    if (fromEnv !== undefined && fromEnv !== '') return { value: fromEnv, source: 'env', where: envName };
    const fromFile = file?.values[envName];
    if (fromFile !== undefined) return { value: fromFile, source: 'file', where: `${envName} in ${file?.file}` };
    return { value: undefined, source: 'default', where: envName };
  };
  return {
    string(flag: string, envName: string, fallback: string): string {
      const { value, source } = raw(flag, envName);
      record?.({ flag, env: envName, kind: 'string', value: value ?? fallback, defaultValue: fallback, source });
      return value ?? fallback;
    },
    int(flag: string, envName: string, fallback: number, min = 0): number {
      const { value, source, where } = raw(flag, envName);
      let parsed = fallback;
      if (value !== undefined && value !== '') {
        parsed = Number(value);
        if (!Number.isInteger(parsed) || parsed < min) throw new ConfigError(`${where} must be an integer >= ${min}, got "${value}" (--${flag} / ${envName})`);
      }
      record?.({ flag, env: envName, kind: 'integer', value: parsed, defaultValue: fallback, source, min });
      return parsed;
    },
    oneOf<T extends string>(flag: string, envName: string, allowed: readonly T[], fallback: T): T {
      const { value: given, source, where } = raw(flag, envName);
      const value = given ?? fallback;
      if (!(allowed as readonly string[]).includes(value))
        throw new ConfigError(`${where} must be one of ${allowed.join(', ')}, got "${value}" (--${flag} / ${envName})`);
      record?.({ flag, env: envName, kind: 'one of', value, defaultValue: fallback, source, allowed });
      return value as T;
    },
  };
}

/** Every setting of the configuration, with its effective value and where it came from. */
export function describeConfig(env: Env = process.env, flags: Flags = {}): SettingRecord[] {
  const settings: SettingRecord[] = [];
  buildConfig(env, flags, (s) => settings.push(s));
  return settings;
}

/** Which process a setting belongs to, by its name; the rest are shared. */
export function scopeOf(envName: string): 'api' | 'relay' | 'scorer' | 'common' {
  if (/^EVALBOX_API_|^EVALBOX_SHUTDOWN_GRACE_MS$/.test(envName)) return 'api';
  if (/^EVALBOX_(RELAY|OUTBOX)_|^EVALBOX_TOPIC_PARTITIONS$/.test(envName)) return 'relay';
  if (/^EVALBOX_(SCORER|JUDGE)_/.test(envName)) return 'scorer';
  return 'common';
}

/** The option list of a command's --help, generated from the configuration so it cannot drift. */
export function optionsHelp(scope: 'api' | 'relay' | 'scorer'): string {
  const rows = describeConfig({}, {}).filter((s) => scopeOf(s.env) === scope || (scopeOf(s.env) === 'common' && COMMON_FLAGS_SHOWN.has(s.flag)));
  const left = (s: SettingRecord) => {
    if (ENV_ONLY.test(s.flag)) return `(env only)`;
    return `--${FLAG_ALIASES[s.flag] ?? s.flag} ${s.kind === 'integer' ? 'N' : s.kind === 'one of' ? (s.allowed ?? []).join('|') : 'VALUE'}`;
  };
  const width = Math.max(...rows.map((s) => left(s).length));
  return rows
    .map((s) => {
      const fallback = s.defaultValue === '' ? 'unset' : s.defaultValue === Number.MAX_SAFE_INTEGER ? 'all' : maskSecret(s.env, s.defaultValue);
      return `  ${left(s).padEnd(width)}  ${describeSetting(s.env)} (env ${s.env}, default ${fallback})`;
    })
    .join('\n');
}

/** Flags a command spells differently from the configuration's flag (whose names are shared by all). */
const FLAG_ALIASES: Record<string, string> = { 'scorer-pool-size': 'pool-size' };
/** Settings read from the environment (or the file) only. */
const ENV_ONLY = /^(judge|console|otel)-|^log-content$/;

/** Shared settings that a process command also lists in its --help. */
const COMMON_FLAGS_SHOWN = new Set([
  'admin-port',
  'host',
  'admin-host',
  'topic-events',
  'topic-scores',
  'topic-dlt',
  'otel-traces-exporter',
  'otel-exporter-otlp-endpoint',
  'otel-exporter-otlp-protocol',
  'otel-service-name',
  'log-content',
]);

/** The parseArgs options of every flag a scope's settings accept. */
export function settingFlags(scope: 'api' | 'relay' | 'scorer'): Record<string, { type: 'string' }> {
  const flags: Record<string, { type: 'string' }> = {};
  for (const s of describeConfig({}, {}))
    if ((scopeOf(s.env) === scope || scopeOf(s.env) === 'common') && !ENV_ONLY.test(s.flag)) flags[FLAG_ALIASES[s.flag] ?? s.flag] = { type: 'string' };
  return flags;
}

export function loadConfig(env: Env = process.env, flags: Flags = {}): Config {
  return buildConfig(env, flags);
}

function buildConfig(env: Env, flags: Flags, record?: (setting: SettingRecord) => void): Config {
  const read = reader(env, flags, record);
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
        maxInFlight: read.int('group-max-in-flight', 'EVALBOX_API_GROUP_MAX_IN_FLIGHT', 4, 0),
      },
      idempotencyTtlHours: read.int('idempotency-ttl-hours', 'EVALBOX_API_IDEMPOTENCY_TTL_HOURS', 24, 1),
      headersTimeoutMs: read.int('headers-timeout-ms', 'EVALBOX_API_HEADERS_TIMEOUT_MS', 10_000, 1),
      requestTimeoutMs: read.int('request-timeout-ms', 'EVALBOX_API_REQUEST_TIMEOUT_MS', 30_000, 1),
      keepAliveTimeoutMs: read.int('keep-alive-timeout-ms', 'EVALBOX_API_KEEP_ALIVE_TIMEOUT_MS', 5_000, 1),
      bodyIdleTimeoutMs: read.int('body-idle-timeout-ms', 'EVALBOX_API_BODY_IDLE_TIMEOUT_MS', 10_000, 1),
      statementTimeoutMs: read.int('statement-timeout-ms', 'EVALBOX_API_STATEMENT_TIMEOUT_MS', 5_000, 0),
      idleInTransactionTimeoutMs: read.int('idle-in-transaction-timeout-ms', 'EVALBOX_API_IDLE_IN_TRANSACTION_TIMEOUT_MS', 10_000, 0),
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
      maxShards: read.int('max-shards', 'EVALBOX_RELAY_MAX_SHARDS', Number.MAX_SAFE_INTEGER, 1),
      topicPartitions: read.int('topic-partitions', 'EVALBOX_TOPIC_PARTITIONS', 6, 1),
      batchBytes: read.int('batch-bytes', 'EVALBOX_RELAY_BATCH_BYTES', 16 * 1024 * 1024, 1),
      retryBaseMs: read.int('relay-retry-base-ms', 'EVALBOX_RELAY_RETRY_BASE_MS', 100, 1),
      retryMaxMs: read.int('relay-retry-max-ms', 'EVALBOX_RELAY_RETRY_MAX_MS', 5_000, 1),
      unknownTopicParkMs: read.int('unknown-topic-park-ms', 'EVALBOX_RELAY_UNKNOWN_TOPIC_PARK_MS', 120_000, 1),
      statementTimeoutMs: read.int('relay-statement-timeout-ms', 'EVALBOX_RELAY_STATEMENT_TIMEOUT_MS', 30_000, 0),
    },
    scorer: {
      group: read.string('group', 'EVALBOX_SCORER_GROUP', 'evalbox-scorer'),
      orderingKey: read.oneOf('ordering-key', 'EVALBOX_SCORER_ORDERING_KEY', ['evaluation', 'kafka-key'] as const, 'evaluation'),
      maxInFlight: read.int('max-in-flight', 'EVALBOX_SCORER_MAX_IN_FLIGHT', 500, 1),
      maxAttempts: read.int('max-attempts', 'EVALBOX_SCORER_MAX_ATTEMPTS', 5, 1),
      maxRetryAgeMs: read.int('max-retry-age-ms', 'EVALBOX_SCORER_MAX_RETRY_AGE_MS', 300_000, 1),
      retryBaseMs: read.int('retry-base-ms', 'EVALBOX_SCORER_RETRY_BASE_MS', 200, 1),
      poolSize: read.int('scorer-pool-size', 'EVALBOX_SCORER_POOL_SIZE', 20, 1),
      graceMs: read.int('grace-ms', 'EVALBOX_SCORER_GRACE_MS', 20_000, 1),
      idleInTransactionTimeoutMs: read.int('scorer-idle-in-transaction-timeout-ms', 'EVALBOX_SCORER_IDLE_IN_TRANSACTION_TIMEOUT_MS', 10_000, 0),
    },
    console: { token: read.string('console-token', 'EVALBOX_CONSOLE_TOKEN', '') },
    telemetry: {
      tracesExporter: read.oneOf('otel-traces-exporter', 'OTEL_TRACES_EXPORTER', ['none', 'otlp'] as const, 'none'),
      otlpEndpoint: read.string('otel-exporter-otlp-endpoint', 'OTEL_EXPORTER_OTLP_ENDPOINT', ''),
      otlpProtocol: read.oneOf('otel-exporter-otlp-protocol', 'OTEL_EXPORTER_OTLP_PROTOCOL', ['http/protobuf', 'http/json'] as const, 'http/protobuf'),
      serviceName: read.string('otel-service-name', 'OTEL_SERVICE_NAME', ''),
      logContent: read.oneOf('log-content', 'EVALBOX_LOG_CONTENT', ['off', 'on'] as const, 'off') === 'on',
    },
    judge: {
      baseUrl: read.string('judge-base-url', 'EVALBOX_JUDGE_BASE_URL', ''),
      model: read.string('judge-model', 'EVALBOX_JUDGE_MODEL', ''),
      apiKey: read.string('judge-api-key', 'EVALBOX_JUDGE_API_KEY', ''),
      configFile: read.string('judge-config', 'EVALBOX_JUDGE_CONFIG', ''),
    },
  };
}

/** Fails with a clear message when a process needs a setting that is missing. */
export function requireSetting(value: string, name: string): string {
  if (!value) throw new ConfigError(`${name} is not set (run \`eval "$(npx evalbox stack up)"\` or export it)`);
  return value;
}
