// Relay test helpers: an in-process relay on a test database with fast lease timings, and a
// consumer that collects everything a topic receives.
import { createBatchProducer, createKafka, ensureTopics } from '../src/kafka.js';
import { readCloudEventHeaders } from '../src/cloudevents.js';
import { silentLogger } from '../src/logging.js';
import { createRelay, type Relay, type RelaySettings } from '../outbox-relay/relay.js';
import type { TestDatabase } from './helpers.js';
import { kafkaBrokers, uniqueName } from './helpers.js';

export const FAST_RELAY: RelaySettings = {
  batchSize: 200,
  wakeup: 'notify',
  pollMinMs: 5,
  pollMaxMs: 100,
  leaseTtlMs: 1500,
  heartbeatMs: 300,
  retentionHours: 72,
  partitionsAhead: 2,
  maxShards: 64,
  horizonReportAfterMs: 500,
  partitionMaintenanceMs: 600_000,
};

export function startTestRelay(
  database: TestDatabase,
  settings: Partial<RelaySettings> = {},
  brokers = kafkaBrokers(),
  producerConfig: Record<string, unknown> = {},
): Relay {
  return createRelay({
    db: database.db,
    databaseUrl: database.url,
    createProducer: () => createBatchProducer(brokers, { clientId: 'evalbox-relay-test', overrides: { 'message.timeout.ms': 60_000, ...producerConfig } }),
    logger: silentLogger(),
    settings: { ...FAST_RELAY, ...settings },
  });
}

export interface Received {
  key: string;
  value: string;
  ceId: string;
  ceType: string | undefined;
  headers: Record<string, string | undefined>;
  partition: number;
  offset: string;
}

/** Collects every message of `topic` from the beginning until stop(). */
export async function collectTopic(topic: string, brokers = kafkaBrokers()) {
  const kafka = createKafka(brokers, 'evalbox-test-collector');
  const received: Received[] = [];
  const consumer = kafka.consumer({ kafkaJS: { groupId: uniqueName('collector'), fromBeginning: true } });
  await consumer.connect();
  await consumer.subscribe({ topic });
  await consumer.run({
    eachMessage: async ({ message, partition }) => {
      const ce = readCloudEventHeaders(message.headers);
      received.push({
        key: String(message.key),
        value: String(message.value),
        ceId: ce.id ?? '',
        ceType: ce.type,
        headers: { ...ce, contentType: readHeader(message.headers, 'content-type') },
        partition,
        offset: message.offset,
      });
    },
  });
  return { received, stop: () => consumer.disconnect() };
}

function readHeader(headers: unknown, name: string): string | undefined {
  const value = (headers as Record<string, unknown> | undefined)?.[name];
  if (value === undefined) return undefined;
  return Buffer.isBuffer(value) ? value.toString('utf8') : typeof value === 'string' ? value : JSON.stringify(value);
}

export async function createTopic(brokers = kafkaBrokers(), partitions = 3): Promise<string> {
  const topic = uniqueName('relay');
  await ensureTopics(createKafka(brokers, 'evalbox-test-admin'), [{ topic, numPartitions: partitions }]);
  return topic;
}
