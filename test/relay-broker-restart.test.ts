// The broker goes away mid-run and comes back: the relay retries and nothing is lost. This test
// runs its own private broker (sharing the resolved jars) so the suite's broker stays up.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { defaultCacheDir } from '../src/config.js';
import { insertOutboxEvents } from '../src/events.js';
import { startKafka, stopKafka, type KafkaState } from '../src/stack/kafka.js';
import type { Relay } from '../outbox-relay/relay.js';
import { createTestDatabase, type TestDatabase } from './helpers.js';
import { collectTopic, createTopic, startTestRelay, waitForPublished } from './relay-helpers.js';

describe('relay across a broker restart', () => {
  let database: TestDatabase;
  let broker: KafkaState | undefined;
  let relay: Relay | undefined;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'evalbox-broker-'));
  const log = () => {};

  beforeAll(async () => {
    database = await createTestDatabase({ max: 10 });
    broker = await startKafka(dir, undefined, log, defaultCacheDir());
  });
  afterAll(async () => {
    await relay?.stop();
    if (broker) await stopKafka(broker);
    await database.drop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('guarantee 2: events written while the broker is down are published after it returns; nothing is lost', async () => {
    const brokers = (broker as KafkaState).brokers;
    const topic = await createTopic(brokers, 1);
    // Shorter than the outage: messages of the batch in flight time out and the batch is redone.
    relay = startTestRelay(database, {}, brokers, { 'message.timeout.ms': 1000 });
    await relay.start();
    let n = 0;
    const write = async (count: number) => {
      for (let i = 0; i < count; i++) {
        await database.db
          .transaction()
          .execute((trx) => insertOutboxEvents(trx, [{ topic, key: `k${n % 3}`, type: 'test.event', source: '/test', data: { n: n++ } }]));
      }
    };
    await write(50);
    await waitForPublished(
      database,
      relay,
      async () => (await database.db.selectFrom('relay_leases').select('cursor_seq').executeTakeFirst())?.cursor_seq === '50',
      {
        what: 'the first 50 events published',
        timeoutMs: 30_000,
      },
    );

    await stopKafka(broker as KafkaState);
    await write(100); // the relay cannot publish these yet
    await new Promise((r) => setTimeout(r, 2000));
    broker = await startKafka(dir, broker, log, defaultCacheDir());
    expect(broker.brokers).toBe(brokers);
    await write(50);

    const collector = await collectTopic(topic, brokers);
    try {
      await waitForPublished(database, relay, () => new Set(collector.received.map((m) => m.ceId)).size >= 200, { what: 'all 200 events', timeoutMs: 90_000 });
      const ids = (await database.db.selectFrom('outbox').select('id').execute()).map((r) => r.id);
      expect(new Set(collector.received.map((m) => m.ceId))).toEqual(new Set(ids));
      // One partition: the order of first arrival is the write order.
      const firstSeen: number[] = [];
      const seen = new Set<string>();
      for (const m of collector.received) if (!seen.has(m.ceId) && seen.add(m.ceId)) firstSeen.push((JSON.parse(m.value) as { n: number }).n);
      expect(firstSeen).toEqual(Array.from({ length: 200 }, (_, i) => i));
    } finally {
      await collector.stop();
    }
  });
});
