// Kafka clients for every process, on @confluentinc/kafka-javascript (librdkafka), and the
// classification of librdkafka errors by code into the shared error hierarchy.
import kafkaJs from '@confluentinc/kafka-javascript';
import { PermanentError, RetryableError, type EvalboxError, coerceError } from './errors.js';
import type { Logger } from './logging.js';

const { KafkaJS } = kafkaJs;
export const kafkaCodes = kafkaJs.CODES.ERRORS as Record<string, number>;

export type Kafka = InstanceType<typeof KafkaJS.Kafka>;
export type Producer = ReturnType<Kafka['producer']>;
export type Consumer = ReturnType<Kafka['consumer']>;
export type Admin = ReturnType<Kafka['admin']>;

/** Routes librdkafka's log lines into pino (or drops them without a logger) instead of the console. */
function kafkaLogger(logger: Logger | undefined) {
  const write = (level: 'debug' | 'info' | 'warn' | 'error') => (message: string, extra?: Record<string, unknown>) => logger?.[level]({ kafka: extra }, String(message));
  const adapter = { info: write('info'), warn: write('warn'), error: write('error'), debug: write('debug'), setLogLevel: () => {}, namespace: () => adapter };
  return adapter;
}

export function createKafka(brokers: string, clientId = 'evalbox', logger?: Logger): Kafka {
  return new KafkaJS.Kafka({
    kafkaJS: { brokers: brokers.split(',').map((b) => b.trim()), clientId, logLevel: KafkaJS.logLevel.WARN, logger: kafkaLogger(logger) as never },
  });
}

/** The idempotent producer: acks=all, idempotence on, so a retry never writes a message twice. */
export function createIdempotentProducer(kafka: Kafka, overrides: Record<string, unknown> = {}): Producer {
  return kafka.producer({
    'enable.idempotence': true,
    acks: -1,
    'linger.ms': 2,
    'compression.type': 'lz4',
    // bounded so a dead broker surfaces as a retryable error instead of an endless wait
    'message.timeout.ms': 30_000,
    ...overrides,
  } as never);
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
  ['ERR_MSG_SIZE_TOO_LARGE', 'ERR_TOPIC_EXCEPTION', 'ERR_INVALID_MSG', 'ERR_INVALID_MSG_SIZE', 'ERR__MSG_TIMED_OUT_NEVER', 'ERR_TOPIC_AUTHORIZATION_FAILED', 'ERR__INVALID_ARG', 'ERR_INVALID_RECORD', 'ERR_RECORD_LIST_TOO_LARGE']
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
    await admin.listTopics({ timeout: 3000 } as never);
    return true;
  } catch {
    return false;
  } finally {
    await admin.disconnect().catch(() => {});
  }
}
