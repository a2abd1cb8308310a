// Kafka clients for every process, on @confluentinc/kafka-javascript (librdkafka), and the
// classification of librdkafka errors by code into the shared error hierarchy.
import kafkaJs, { type KafkaJS as KafkaJSTypes, type ProducerGlobalConfig, type ProducerTopicConfig } from '@confluentinc/kafka-javascript';
import { PermanentError, RetryableError, type EvalboxError, coerceError } from './errors.js';
import type { Logger } from './logging.js';

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

// acks=all and idempotence: a retry inside librdkafka never writes a message twice or out of order.
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
  value: string;
  headers: Record<string, string>;
}

/** One outcome per message: the time (ms) the broker's acknowledgement arrived, or the classified error. */
export type DeliveryOutcome = number | EvalboxError;

/** A producer for high-volume batches that need one delivery outcome per message (the relay). */
export interface BatchProducer {
  connect(): Promise<void>;
  /**
   * Produces the messages in order and resolves when librdkafka has reported on every one. After
   * a retryable refusal at enqueue time (a full local queue) the rest are not produced and carry
   * the same error, so no later message of a key overtakes an earlier one.
   */
  produceBatch(messages: OutgoingMessage[]): Promise<DeliveryOutcome[]>;
  flush(timeoutMs: number): Promise<void>;
  disconnect(): Promise<void>;
}

interface PendingBatch {
  outcomes: DeliveryOutcome[];
  remaining: number;
  resolve: () => void;
}

/**
 * The idempotent producer on librdkafka's own produce/delivery-report API. The KafkaJS-compatible
 * wrapper converts every message and creates a promise per message; here a batch is one promise
 * and each delivery report only decrements a counter, which doubles throughput (bench/relay.ts).
 */
export function createBatchProducer(brokers: string, options: { clientId?: string; logger?: Logger; overrides?: ProducerSettings } = {}): BatchProducer {
  const producer = new kafkaJs.Producer({
    'bootstrap.servers': brokers,
    'client.id': options.clientId ?? 'evalbox',
    ...IDEMPOTENT_PRODUCER_CONFIG,
    log_level: LIBRDKAFKA_LOG_LEVEL,
    ...options.overrides,
    dr_cb: true,
  });
  routeLibrdkafkaLogs(producer, options.logger, options.clientId ?? 'evalbox');
  producer.on('delivery-report', (error, report) => {
    const { batch, index } = report.opaque as { batch: PendingBatch; index: number };
    batch.outcomes[index] = error ? classifyKafkaError(error) : Date.now();
    if (--batch.remaining === 0) batch.resolve();
  });

  return {
    connect: () =>
      new Promise<void>((resolve, reject) => {
        producer.connect({ timeout: 30_000 }, (error) => {
          if (error) return reject(classifyKafkaError(error));
          // delivery reports are served by librdkafka's thread, not a JS timer
          producer.setPollInBackground(true);
          resolve();
        });
      }),
    produceBatch(messages) {
      const outcomes: DeliveryOutcome[] = new Array<DeliveryOutcome>(messages.length);
      return new Promise((resolve) => {
        const batch: PendingBatch = { outcomes, remaining: 1, resolve: () => resolve(outcomes) };
        for (let index = 0; index < messages.length; index++) {
          const message = messages[index] as OutgoingMessage;
          const headers = Object.entries(message.headers).map(([name, value]) => ({ [name]: value }));
          try {
            batch.remaining++;
            producer.produce(message.topic, -1, Buffer.from(message.value), message.key, 0, { batch, index }, headers);
          } catch (thrown) {
            batch.remaining--;
            const error = classifyKafkaError(thrown);
            outcomes[index] = error;
            if (error.retryable) {
              for (let rest = index + 1; rest < messages.length; rest++) outcomes[rest] = error;
              break;
            }
          }
        }
        // the initial 1 keeps the batch open until every message was handed over
        if (--batch.remaining === 0) batch.resolve();
      });
    },
    flush: (timeoutMs) => new Promise((resolve, reject) => producer.flush(timeoutMs, (error) => (error ? reject(classifyKafkaError(error)) : resolve()))),
    disconnect: () => new Promise((resolve) => producer.disconnect(5_000, () => resolve())),
  };
}

/** librdkafka marks some idempotent-producer errors fatal: that producer instance must be replaced. */
export function isFatalKafkaError(error: EvalboxError): boolean {
  const cause = error.cause as { fatal?: boolean; isFatal?: boolean } | undefined;
  return cause?.fatal === true || cause?.isFatal === true;
}

export interface TopicSpec {
  topic: string;
  numPartitions?: number;
}

/** Creates the topics that do not exist yet; existing ones are left as they are. */
export async function ensureTopics(kafka: Kafka, topics: TopicSpec[]): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const existing = new Set(await admin.listTopics());
    const missing = topics.filter((t) => !existing.has(t.topic));
    if (missing.length === 0) return;
    try {
      await admin.createTopics({ topics: missing.map((t) => ({ topic: t.topic, numPartitions: t.numPartitions ?? 3, replicationFactor: 1 })) });
    } catch (error) {
      // another process created it first
      if ((error as { code?: number }).code !== kafkaCodes.ERR_TOPIC_ALREADY_EXISTS) throw error;
    }
  } finally {
    await admin.disconnect();
  }
}

// Errors that concern one message and will not go away by retrying it.
const PERMANENT_MESSAGE_CODES = new Set(
  [
    'ERR_MSG_SIZE_TOO_LARGE',
    'ERR_TOPIC_EXCEPTION',
    'ERR_INVALID_MSG',
    'ERR_INVALID_MSG_SIZE',
    'ERR__MSG_TIMED_OUT_NEVER',
    'ERR_TOPIC_AUTHORIZATION_FAILED',
    'ERR__INVALID_ARG',
    'ERR_INVALID_RECORD',
    'ERR_RECORD_LIST_TOO_LARGE',
  ]
    .map((name) => kafkaCodes[name])
    .filter((code): code is number => code !== undefined),
);

/** Classifies a librdkafka error by its code: per-message permanent errors vs everything else. */
export function classifyKafkaError(thrown: unknown): EvalboxError {
  const error = coerceError(thrown);
  const code = (thrown as { code?: unknown })?.code;
  const name = typeof code === 'number' ? (Object.keys(kafkaCodes).find((k) => kafkaCodes[k] === code) ?? `KAFKA_${code}`) : 'KAFKA_UNKNOWN';
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
