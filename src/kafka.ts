// Kafka clients for every process, on @confluentinc/kafka-javascript (librdkafka), and the
// classification of librdkafka errors by code into the shared error hierarchy.
import { setTimeout as sleep } from 'node:timers/promises';
import kafkaJs, { type KafkaJS as KafkaJSTypes, type ProducerGlobalConfig, type ProducerTopicConfig } from '@confluentinc/kafka-javascript';
import { EvalboxError, PermanentError, RetryableError, coerceError } from './errors.js';
import type { Logger } from './logging.js';
import { STARTUP_BACKOFF, withRetry, type BackoffPolicy } from './retry.js';

const { KafkaJS } = kafkaJs;
export const kafkaCodes = kafkaJs.CODES.ERRORS as Record<string, number>;

export type Kafka = InstanceType<typeof KafkaJS.Kafka>;
export type Producer = ReturnType<Kafka['producer']>;
export type Consumer = ReturnType<Kafka['consumer']>;
export type Admin = ReturnType<Kafka['admin']>;

/** Routes librdkafka's log lines into pino (or drops them without a logger) instead of the console. */
function kafkaLogger(logger: Logger | undefined): KafkaJSTypes.Logger {
  const write = (level: 'debug' | 'info' | 'warn' | 'error') => (message: string, extra?: object) => logger?.[level]({ kafka: extra }, String(message));
  const adapter: KafkaJSTypes.Logger = {
    info: write('info'),
    warn: write('warn'),
    error: write('error'),
    debug: write('debug'),
    setLogLevel: () => {},
    namespace: () => adapter,
  };
  return adapter;
}

export function createKafka(brokers: string, clientId = 'evalbox', logger?: Logger): Kafka {
  return new KafkaJS.Kafka({
    kafkaJS: { brokers: brokers.split(',').map((b) => b.trim()), clientId, logLevel: KafkaJS.logLevel.WARN, logger: kafkaLogger(logger) },
  });
}

export type ProducerSettings = ProducerGlobalConfig & ProducerTopicConfig;

// acks=all and idempotence: librdkafka's own retries neither repeat nor reorder a message. A message
// that fails for good (message.timeout.ms) can still be followed by later ones that are written, so
// only a transaction that aborts whole keeps a redo from repeating or reordering a key.
const IDEMPOTENT_PRODUCER_CONFIG: ProducerSettings = {
  'enable.idempotence': true,
  acks: -1,
  'linger.ms': 2,
  'compression.type': 'lz4',
  // bounded so a dead broker surfaces as a retryable error instead of an endless wait
  'message.timeout.ms': 30_000,
};

/** librdkafka's log level for clients on its own API: warnings and above (syslog severities). */
export const LIBRDKAFKA_LOG_LEVEL = 4;

interface EventSource {
  on(event: 'event.log', listener: (entry: { severity: number; fac: string; message: string }) => void): unknown;
  on(event: 'event.error', listener: (error: Error) => void): unknown;
}

/** Routes a librdkafka client's log lines and error events into pino (or drops them without a logger). */
export function routeLibrdkafkaLogs(client: EventSource, logger: Logger | undefined, name: string): void {
  client.on('event.log', (entry) => {
    const level = entry.severity <= 3 ? 'error' : entry.severity === 4 ? 'warn' : entry.severity <= 6 ? 'info' : 'debug';
    logger?.[level]({ kafka: { client: name, fac: entry.fac } }, entry.message);
  });
  client.on('event.error', (error) => logger?.warn({ err: error, kafka: { client: name } }, 'kafka client error'));
}

/** The idempotent producer on the KafkaJS-compatible API, for occasional sends (DLT, CLI, tests). */
export function createIdempotentProducer(kafka: Kafka, overrides: ProducerSettings = {}): Producer {
  return kafka.producer({ ...IDEMPOTENT_PRODUCER_CONFIG, ...overrides });
}

export interface OutgoingMessage {
  topic: string;
  key: string;
  /** A Buffer is handed to librdkafka as it is (no copy); a string is encoded once. */
  value: string | Buffer;
  headers: Record<string, string>;
}

/** Headers whose values repeat across a batch: one librdkafka header object per distinct value and batch. */
const REPEATED_HEADERS = new Set(['ce_type', 'ce_source', 'ce_specversion', 'content-type', 'ce_dataschema']);

function headerList(headers: Record<string, string>, repeated: Map<string, Record<string, string>>): Record<string, string>[] {
  const list: Record<string, string>[] = [];
  for (const name in headers) {
    const value = headers[name] as string;
    if (!REPEATED_HEADERS.has(name)) {
      list.push({ [name]: value });
      continue;
    }
    const id = `${name}\0${value}`;
    let header = repeated.get(id);
    if (!header) repeated.set(id, (header = { [name]: value }));
    list.push(header);
  }
  return list;
}

/** A message librdkafka refused at enqueue (e.g. a full local queue): it never left the process. */
export interface NotProduced {
  notProduced: EvalboxError;
}

/** One outcome per message: acknowledged by the broker, the classified delivery error, or a refusal at enqueue. */
export type DeliveryOutcome = 'acknowledged' | EvalboxError | NotProduced;

/** A producer for high-volume batches that need one delivery outcome per message (the relay). */
export interface BatchProducer {
  connect: () => Promise<void>;
  /**
   * Produces the messages in order and resolves when librdkafka has reported on every one. After
   * a retryable refusal at enqueue time (a full local queue) the rest are not produced and carry
   * the same error, so no later message of a key overtakes an earlier one.
   */
  produceBatch: (messages: OutgoingMessage[]) => Promise<DeliveryOutcome[]>;
  flush: (timeoutMs: number) => Promise<void>;
  disconnect: () => Promise<void>;
}

interface PendingBatch {
  outcomes: DeliveryOutcome[];
  remaining: number;
  resolve: () => void;
}

/**
 * librdkafka's own Producer with the relay's batch produce: the KafkaJS-compatible wrapper
 * converts every message and creates a promise per message; here a batch is one promise and each
 * delivery report only decrements a counter, which doubles throughput (bench/relay.ts).
 */
function nativeBatchProducer(config: ProducerSettings, options: { clientId?: string; logger?: Logger }) {
  const producer = new kafkaJs.Producer({ ...config, dr_cb: true });
  routeLibrdkafkaLogs(producer, options.logger, options.clientId ?? 'evalbox');
  producer.on('delivery-report', (error, report) => {
    const { batch, index } = report.opaque as { batch: PendingBatch; index: number };
    batch.outcomes[index] = error ? classifyKafkaError(error) : 'acknowledged';
    if (--batch.remaining === 0) batch.resolve();
  });
  const call = (what: (done: (error: unknown) => void) => void) =>
    new Promise<void>((resolve, reject) => what((error) => (error ? reject(classifyKafkaError(error)) : resolve())));
  return {
    producer,
    call,
    connect: () =>
      call((done) =>
        producer.connect({ timeout: 30_000 }, (error) => {
          // delivery reports are served by librdkafka's thread, not a JS timer
          if (!error) producer.setPollInBackground(true);
          done(error);
        }),
      ),
    produceBatch: (messages: OutgoingMessage[]): Promise<DeliveryOutcome[]> => {
      const outcomes: DeliveryOutcome[] = new Array<DeliveryOutcome>(messages.length);
      return new Promise((resolve) => {
        const batch: PendingBatch = { outcomes, remaining: 1, resolve: () => resolve(outcomes) };
        const repeated = new Map<string, Record<string, string>>();
        for (let index = 0; index < messages.length; index++) {
          const message = messages[index] as OutgoingMessage;
          const headers = headerList(message.headers, repeated);
          const value = typeof message.value === 'string' ? Buffer.from(message.value) : message.value;
          try {
            batch.remaining++;
            producer.produce(message.topic, -1, value, message.key, 0, { batch, index }, headers);
          } catch (thrown) {
            batch.remaining--;
            const error = classifyKafkaError(thrown);
            outcomes[index] = { notProduced: error };
            if (error.retryable) {
              for (let rest = index + 1; rest < messages.length; rest++) outcomes[rest] = { notProduced: error };
              break;
            }
          }
        }
        // the initial 1 keeps the batch open until every message was handed over
        if (--batch.remaining === 0) batch.resolve();
      });
    },
    flush: (timeoutMs: number) => call((done) => producer.flush(timeoutMs, done)),
    disconnect: () => new Promise<void>((resolve) => producer.disconnect(5_000, () => resolve())),
  };
}

/**
 * The idempotent producer (no transactions) for high-volume batches. The relay used it before
 * transactions; it stays for the benchmark's comparison. A message that fails mid-batch can be
 * followed by later ones that are written, so a redo from the failed one repeats them.
 */
export function createBatchProducer(brokers: string, options: { clientId?: string; logger?: Logger; overrides?: Record<string, unknown> } = {}): BatchProducer {
  const native = nativeBatchProducer(
    {
      'bootstrap.servers': brokers,
      'client.id': options.clientId ?? 'evalbox',
      ...IDEMPOTENT_PRODUCER_CONFIG,
      log_level: LIBRDKAFKA_LOG_LEVEL,
      ...options.overrides,
    },
    options,
  );
  return {
    connect: () => native.connect(),
    produceBatch: (messages) => native.produceBatch(messages),
    flush: (ms) => native.flush(ms),
    disconnect: () => native.disconnect(),
  };
}

/**
 * A transactional producer: every batch is one Kafka transaction, visible to read_committed
 * consumers only when committed whole. `transactional.id` names the producer across restarts and
 * processes: connect() (initTransactions) fences every older producer with the same id and aborts
 * its open transaction, so a paused or partitioned former owner can never commit again.
 */
export interface TransactionalProducer {
  /** Connects and initialises transactions, fencing older producers with the same transactional.id. */
  connect: () => Promise<void>;
  begin: () => Promise<void>;
  /** As BatchProducer.produceBatch, inside the open transaction. */
  produceBatch: (messages: OutgoingMessage[]) => Promise<DeliveryOutcome[]>;
  commit: (timeoutMs: number) => Promise<void>;
  abort: (timeoutMs: number) => Promise<void>;
  disconnect: () => Promise<void>;
}

export function createTransactionalProducer(
  brokers: string,
  options: { transactionalId: string; clientId?: string; logger?: Logger; overrides?: Record<string, unknown> },
): TransactionalProducer {
  const native = nativeBatchProducer(
    {
      'bootstrap.servers': brokers,
      'client.id': options.clientId ?? 'evalbox',
      ...IDEMPOTENT_PRODUCER_CONFIG,
      // A batch is enqueued whole and then committed (a flush): lingering only delays its first
      // send. Measured at 200 events/s: p50 commit latency 3 ms lower, throughput unchanged.
      'linger.ms': 0,
      'transactional.id': options.transactionalId,
      // An owner that died mid-transaction and is never replaced holds back read_committed
      // consumers of the partitions it wrote to for this long; a successor aborts it at once.
      'transaction.timeout.ms': 30_000,
      log_level: LIBRDKAFKA_LOG_LEVEL,
      ...options.overrides,
    },
    options,
  );
  const { producer: p, call } = native;
  return {
    async connect() {
      await native.connect();
      await call((done) => p.initTransactions(30_000, done));
    },
    begin: () => call((done) => p.beginTransaction(done)),
    produceBatch: (messages) => native.produceBatch(messages),
    commit: (timeoutMs) => call((done) => p.commitTransaction(timeoutMs, done)),
    abort: (timeoutMs) => call((done) => p.abortTransaction(timeoutMs, done)),
    disconnect: native.disconnect,
  };
}

// The producer instance is unusable after these: replace it (and, for a transactional producer,
// a fenced one means another owner took over).
const FATAL_PRODUCER_CODES = new Set(
  ['ERR__FATAL', 'ERR__FENCED', 'ERR_PRODUCER_FENCED', 'ERR_INVALID_PRODUCER_EPOCH', 'ERR__GAPLESS_GUARANTEE', 'ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED'].map(
    (name) => kafkaCodes[name],
  ),
);

/**
 * True when the producer instance must be replaced. Delivery reports carry only a bare code, so
 * the code decides; errors of librdkafka's transactional API also say so themselves (isFatal).
 */
export function isFatalKafkaError(error: EvalboxError): boolean {
  const cause = error.cause as { code?: unknown; fatal?: boolean; isFatal?: boolean } | undefined;
  return (typeof cause?.code === 'number' && FATAL_PRODUCER_CODES.has(cause.code)) || cause?.fatal === true || cause?.isFatal === true;
}

/** True when another producer with the same transactional.id took over. */
export function isFencedKafkaError(error: EvalboxError): boolean {
  return error.code === 'ERR__FENCED' || error.code === 'ERR_PRODUCER_FENCED' || error.code === 'ERR_INVALID_PRODUCER_EPOCH';
}

/** Consumer settings for every reader of evalbox's topics. */
export const READER_SETTINGS = {
  // The relay writes in Kafka transactions: those that were aborted stay invisible.
  'isolation.level': 'read_committed',
  // A subscribed topic the broker does not list (created a moment later, or not yet known to the
  // broker asked) is looked up again at the periodic metadata refresh only: 5 minutes by default.
  'topic.metadata.refresh.interval.ms': 10_000,
} as const;

export interface TopicSpec {
  topic: string;
  numPartitions?: number;
  /** Replicas per partition; -1 (the default) takes the cluster's default.replication.factor. */
  replicationFactor?: number;
}

/**
 * Creates the topics that do not exist yet; existing ones are left as they are. A broker that
 * does not answer yet (a process started during a broker restart) is waited for, with backoff,
 * up to the policy's age, instead of failing the start.
 */
export async function ensureTopics(
  kafka: Kafka,
  topics: TopicSpec[],
  options: { policy?: BackoffPolicy; signal?: AbortSignal; onRetry?: (error: unknown, attempt: number, delayMs: number) => void } = {},
): Promise<void> {
  await withRetry(
    () =>
      createMissingTopics(kafka, topics, options.signal).catch((error: unknown) => {
        throw classifyKafkaError(error);
      }),
    options.policy ?? STARTUP_BACKOFF,
    { signal: options.signal, onRetry: options.onRetry },
  );
}

async function createMissingTopics(kafka: Kafka, topics: TopicSpec[], signal: AbortSignal | undefined): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const existing = new Set(await admin.listTopics());
    const missing = topics.filter((t) => !existing.has(t.topic));
    if (missing.length === 0) return;
    try {
      await admin.createTopics({
        topics: missing.map((t) => ({ topic: t.topic, numPartitions: t.numPartitions ?? 3, replicationFactor: t.replicationFactor ?? -1 })),
      });
    } catch (error) {
      // another process created it first
      if ((error as { code?: number }).code !== kafkaCodes.ERR_TOPIC_ALREADY_EXISTS) throw error;
    }
    await waitUntilListed(
      admin,
      missing.map((t) => t.topic),
      signal,
    );
  } finally {
    await admin.disconnect();
  }
}

// A broker answers CreateTopics once the controller has recorded the topics; its own metadata (and
// other brokers') list them a moment later, longer on a busy broker. A reader that subscribes in
// that moment is told they do not exist, and looks again only at its next metadata refresh.
async function waitUntilListed(admin: ReturnType<Kafka['admin']>, topics: string[], signal: AbortSignal | undefined, timeoutMs = 10_000): Promise<void> {
  const giveUpAt = Date.now() + timeoutMs;
  for (;;) {
    const listed = await admin.fetchTopicMetadata({ topics, timeout: 2_000 }).catch((error: unknown) => {
      if (NOT_LISTED_YET.has((error as { code?: unknown }).code as number)) return [];
      throw error;
    });
    const ready = (topic: string) => listed.some((m) => m.name === topic && m.partitions.length > 0 && m.partitions.every((p) => p.leader >= 0));
    const unlisted = topics.filter((topic) => !ready(topic));
    if (unlisted.length === 0) return;
    if (Date.now() > giveUpAt) {
      throw new RetryableError(`topics created but not listed by the broker after ${timeoutMs} ms: ${unlisted.join(', ')}`, {
        code: 'ERR_UNKNOWN_TOPIC_OR_PART',
      });
    }
    await sleep(100, undefined, { signal });
  }
}
const NOT_LISTED_YET = new Set([kafkaCodes.ERR_UNKNOWN_TOPIC_OR_PART, kafkaCodes.ERR_LEADER_NOT_AVAILABLE, kafkaCodes.ERR__TIMED_OUT]);

// Errors that will not go away by retrying the message. A missing authorization for a topic and a
// record list too large for the broker are refused for a whole request, which may carry innocent
// rows: the relay then sends the rows one per transaction, where a refusal names its row, and
// parks only that row (outbox-relay/settle.ts).
const PERMANENT_MESSAGE_CODES = new Set(
  [
    'ERR_MSG_SIZE_TOO_LARGE',
    'ERR_TOPIC_EXCEPTION',
    'ERR_INVALID_MSG',
    'ERR_INVALID_MSG_SIZE',
    'ERR__MSG_TIMED_OUT_NEVER',
    'ERR__INVALID_ARG',
    'ERR_INVALID_RECORD',
    'ERR_TOPIC_AUTHORIZATION_FAILED',
    'ERR_RECORD_LIST_TOO_LARGE',
  ]
    .map((name) => kafkaCodes[name])
    .filter((code): code is number => code !== undefined),
);

/** Classifies a librdkafka error by its code: per-message permanent errors vs everything else. */
export function classifyKafkaError(thrown: unknown): EvalboxError {
  // Already classified (the transactional calls reject with classified errors): its code is a name
  // now, and classifying it again would lose it (a fenced commit taken for a passing error).
  if (thrown instanceof EvalboxError) return thrown;
  const error = coerceError(thrown);
  const code = (thrown as { code?: unknown })?.code;
  const isName = (k: string): k is `ERR_${string}` => k.startsWith('ERR_') && kafkaCodes[k] === code;
  const name = typeof code === 'number' ? (Object.keys(kafkaCodes).find(isName) ?? (`KAFKA_${code}` as const)) : 'KAFKA_UNKNOWN';
  if (typeof code === 'number' && PERMANENT_MESSAGE_CODES.has(code)) {
    return new PermanentError(error.message, { code: name, cause: error });
  }
  return new RetryableError(error.message, { code: name, cause: error });
}

/** True once the broker answers a metadata request. */
export async function isKafkaReady(brokers: string): Promise<boolean> {
  const admin = createKafka(brokers, 'evalbox-probe').admin();
  try {
    await admin.connect();
    await admin.listTopics({ timeout: 3000 });
    return true;
  } catch {
    return false;
  } finally {
    await admin.disconnect().catch(() => {});
  }
}
