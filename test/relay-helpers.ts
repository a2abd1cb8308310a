// Relay test helpers: an in-process relay on a test database with fast lease timings, and a
// consumer that collects everything a topic receives.
import { expect } from '@jest/globals';
import { sql } from 'kysely';
import { insertOutboxEvents } from '../src/events.js';
import { createKafka, createTransactionalProducer, ensureTopics } from '../src/kafka.js';
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
    createProducer: (shard) =>
      createTransactionalProducer(brokers, {
        transactionalId: `evalbox-relay-test.${database.name}.shard-${shard}`,
        clientId: 'evalbox-relay-test',
        overrides: { 'message.timeout.ms': 30_000, ...producerConfig },
      }),
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
  /** Date.now() when the collector got it. */
  receivedAt: number;
}

/** Collects every message of `topic` from the beginning until stop(). */
export async function collectTopic(topic: string, brokers = kafkaBrokers()) {
  const kafka = createKafka(brokers, 'evalbox-test-collector');
  const received: Received[] = [];
  const consumer = kafka.consumer({ kafkaJS: { groupId: uniqueName('collector'), fromBeginning: true, readUncommitted: false } });
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
        receivedAt: Date.now(),
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

/**
 * An independent reference for per-key commit order: a counter per key, incremented in the same
 * transaction that writes the key's outbox row, after a per-key lock taken before the
 * transaction's first write.
 */
export async function createCountedKeyTable(database: TestDatabase): Promise<void> {
  await sql`CREATE TABLE IF NOT EXISTS test_key_counter (key text PRIMARY KEY, n integer NOT NULL)`.execute(database.db);
}

/** One transaction writing `count` events over `keys` (round robin), each carrying its key's next counter value. */
export async function writeCounted(database: TestDatabase, topic: string, keys: string[], count: number): Promise<void> {
  await database.db.transaction().execute(async (trx) => {
    const used = [...new Set(Array.from({ length: count }, (_, i) => keys[i % keys.length] as string))].sort();
    for (const key of used) await sql`SELECT pg_advisory_xact_lock(hashtext(${key}))`.execute(trx);
    const events = [];
    for (let i = 0; i < count; i++) {
      const key = keys[i % keys.length] as string;
      const { rows } = await sql<{ n: number }>`
        INSERT INTO test_key_counter (key, n) VALUES (${key}, 1)
        ON CONFLICT (key) DO UPDATE SET n = test_key_counter.n + 1 RETURNING n`.execute(trx);
      events.push({ topic, key, type: 'test.event', source: '/test', data: { key, n: rows[0]?.n } });
    }
    await insertOutboxEvents(trx, events);
  });
}

async function counterOrder(database: TestDatabase): Promise<Map<string, number[]>> {
  const { rows } = await sql<{ key: string; n: number }>`SELECT key, n FROM test_key_counter`.execute(database.db);
  return new Map(rows.map((r) => [r.key, Array.from({ length: r.n }, (_, i) => i + 1)]));
}

const countersByKey = (received: Received[]) => {
  const byKey = new Map<string, number[]>();
  for (const m of received) byKey.set(m.key, [...(byKey.get(m.key) ?? []), (JSON.parse(m.value) as { n: number }).n]);
  return byKey;
};

/** Every key's events arrived exactly once each, in the counter's order. */
export async function expectEveryKeyExactlyInCounterOrder(database: TestDatabase, received: Received[]): Promise<void> {
  expect(countersByKey(received)).toEqual(await counterOrder(database));
}

/**
 * Every key's events arrived in the counter's order, judged both by each event's first copy and by
 * its last copy: a repeat is only ever a replay that continues into newer events, never an older
 * event delivered after a newer one.
 */
export async function expectNoOlderEventAfterNewer(database: TestDatabase, received: Received[]): Promise<void> {
  const expected = await counterOrder(database);
  const firstCopies = new Map<string, number[]>();
  const lastCopies = new Map<string, number[]>();
  for (const [key, ns] of countersByKey(received)) {
    firstCopies.set(key, [...new Set(ns)]);
    lastCopies.set(key, [...new Set([...ns].reverse())].reverse());
  }
  expect(firstCopies).toEqual(expected);
  expect(lastCopies).toEqual(expected);
}
