// The relay between a private broker and a TCP proxy of the test's own, which holds the broker's
// answers back or cuts connections at a chosen moment while a mixed-key batch is in flight. The
// reference for per-key order is a counter per key written in the same transaction as each
// outbox row, never the relay's own (xid, seq) order.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { defaultCacheDir } from '../src/config.js';
import { startKafka, stopKafka, type KafkaState } from '../src/stack/kafka.js';
import type { Relay } from '../outbox-relay/relay.js';
import { createTestDatabase, waitFor, type TestDatabase } from './helpers.js';
import {
  collectTopic,
  createCountedKeyTable,
  createTopic,
  expectEveryKeyExactlyInCounterOrder,
  startTestRelay,
  waitForPublished,
  writeCounted,
} from './relay-helpers.js';
import { startTcpProxy, type TcpProxy } from './tcp-proxy.js';

describe('relay under broker connection faults', () => {
  let database: TestDatabase;
  let broker: KafkaState | undefined;
  let proxy: TcpProxy;
  let relay: Relay | undefined;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'evalbox-broker-'));

  beforeAll(async () => {
    database = await createTestDatabase({ max: 10 });
    await createCountedKeyTable(database);
    proxy = await startTcpProxy(() => (broker as KafkaState).port);
    broker = await startKafka(dir, undefined, () => {}, defaultCacheDir(), { advertisedPort: proxy.port });
  });
  afterAll(async () => {
    await relay?.stop();
    await proxy?.close();
    if (broker) await stopKafka(broker);
    await database.drop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** True once `relay` is sending a batch of at least `rows` rows (or the proxy saw that many bytes go up). */
  function batchInFlight(sender: Relay, rows: number): () => boolean {
    const bytesBefore = proxy.bytesUp();
    let sending = false;
    sender.events.on('relay:batchSending', (e) => (sending ||= e.rows >= rows));
    return () => sending || proxy.bytesUp() > bytesBefore + rows * 30;
  }

  it('finding 1: acknowledgements held past the message timeout mid-batch neither reorder nor repeat any key for read_committed consumers', async () => {
    const brokers = `127.0.0.1:${proxy.port}`;
    const topic = await createTopic(brokers, 3);
    const keys = ['a', 'b', 'c', 'd', 'e', 'f'];
    // A short message timeout, so that the hold below outlasts it.
    relay = startTestRelay(database, { batchSize: 500 }, brokers, { 'message.timeout.ms': 1500, 'transaction.timeout.ms': 5000 });
    await relay.start();
    await waitFor(() => relay?.ownedShards().length === 1, { what: 'the relay to lead' });
    for (let i = 0; i < 10; i++) await writeCounted(database, topic, keys, 6);
    await waitForPublished(
      database,
      relay,
      async () => (await database.db.selectFrom('relay_leases').select('cursor_seq').executeTakeFirst())?.cursor_seq === '60',
      {
        what: 'the first 60 events published',
      },
    );

    // From now on the broker's answers are held back: requests still arrive (an idempotent producer's
    // batch is written), but no acknowledgement arrives before the message timeout.
    proxy.holdResponses();
    const inFlight = batchInFlight(relay, 120);
    await writeCounted(database, topic, keys, 120); // one transaction, 120 events over 6 keys
    await waitForPublished(database, relay, inFlight, { what: 'the relay to start sending the batch' });
    await new Promise((r) => setTimeout(r, 3000)); // twice the message timeout
    proxy.release();
    for (let i = 0; i < 10; i++) await writeCounted(database, topic, keys, 6);

    const collector = await collectTopic(topic, brokers);
    try {
      await waitForPublished(database, relay, () => new Set(collector.received.map((m) => m.ceId)).size >= 240, { what: 'all 240 events', timeoutMs: 60_000 });
      await new Promise((r) => setTimeout(r, 2000)); // late repeats, if any, arrive too
      await expectEveryKeyExactlyInCounterOrder(database, collector.received);
    } finally {
      await collector.stop();
    }
  });

  it('finding 4: a stop whose drain outlasts the lease TTL keeps its lease until it releases it; no other relay leads the shard meanwhile', async () => {
    await relay?.stop();
    relay = undefined;
    const brokers = `127.0.0.1:${proxy.port}`;
    const topic = await createTopic(brokers, 3);
    const keys = ['a', 'b', 'c'];
    const leaseTtlMs = 1500;
    const draining = startTestRelay(database, { leaseTtlMs, heartbeatMs: 300 }, brokers, { 'message.timeout.ms': 10_000 });
    const standby = startTestRelay(database, { leaseTtlMs, heartbeatMs: 300 }, brokers, { 'message.timeout.ms': 10_000 });
    try {
      await draining.start();
      await waitFor(() => draining.ownedShards().length === 1, { what: 'the first relay to lead' });
      const cursorNow = async () => (await database.db.selectFrom('relay_leases').select('cursor_seq').executeTakeFirstOrThrow()).cursor_seq;
      const startSeq = Number(await cursorNow());
      await writeCounted(database, topic, keys, 6);
      await waitForPublished(database, draining, async () => Number(await cursorNow()) >= startSeq + 6, { what: 'the first events published' });
      let releasedAt: number | undefined;
      let takenOverAt: number | undefined;
      draining.events.on('relay:leaseReleased', () => (releasedAt ??= Date.now()));
      standby.events.on('relay:leaseAcquired', () => (takenOverAt ??= Date.now()));
      await standby.start();

      // A slow broker: the batch in flight cannot be acknowledged while the first relay stops.
      proxy.holdResponses();
      const inFlight = batchInFlight(draining, 60);
      await writeCounted(database, topic, keys, 60);
      await waitForPublished(database, draining, inFlight, { what: 'the relay to start sending the batch' });
      const stopped = draining.stop();
      await new Promise((r) => setTimeout(r, 3 * leaseTtlMs));
      proxy.release();
      await stopped;
      await waitFor(() => takenOverAt, { what: 'the standby to take over', timeoutMs: 30_000 });
      expect(releasedAt).toBeDefined();
      expect(takenOverAt).toBeGreaterThanOrEqual(releasedAt as number);

      const collector = await collectTopic(topic, brokers);
      try {
        await waitForPublished(database, standby, () => new Set(collector.received.map((m) => m.ceId)).size >= 66, {
          what: 'all 66 events',
          timeoutMs: 60_000,
        });
        await new Promise((r) => setTimeout(r, 2000));
        const byKey = new Map<string, number[]>();
        for (const m of collector.received) byKey.set(m.key, [...(byKey.get(m.key) ?? []), (JSON.parse(m.value) as { n: number }).n]);
        // Each key's events exactly once, in counter order (the counters go on from the test above).
        for (const [key, ns] of byKey) expect({ key, ns }).toEqual({ key, ns: [...new Set(ns)].sort((x, y) => x - y) });
      } finally {
        await collector.stop();
      }
    } finally {
      await draining.stop().catch(() => {});
      await standby.stop();
    }
  });
});
