// A process that starts while its broker is down (a restart of both at once, a broker kill -9
// during a deploy) waits for the broker instead of exiting: ensureTopics retries with backoff
// until a broker answers on the address (a broker private to this test). A reader that subscribed
// before its topic existed, or asked a broker whose metadata did not list it yet, gets the topic
// soon after it exists (the shared broker).
import { afterAll, describe, expect, it } from '@jest/globals';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createKeyParallelConsumer } from '../consumers/runtime.js';
import { defaultCacheDir } from '../src/config.js';
import { createIdempotentProducer, createKafka, ensureTopics } from '../src/kafka.js';
import { silentLogger } from '../src/logging.js';
import { startKafka, stopKafka, type KafkaState } from '../src/stack/kafka.js';
import { freePort } from '../src/stack/process.js';
import { kafkaBrokers, uniqueName, waitFor } from './helpers.js';

describe('topic set-up at start', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'evalbox-late-broker-'));
  let broker: KafkaState | undefined;
  afterAll(async () => {
    if (broker) await stopKafka(broker);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('waits for a broker that is not up yet instead of failing the start', async () => {
    const port = await freePort();
    const controllerPort = await freePort();
    const kafka = createKafka(`127.0.0.1:${port}`, 'evalbox-late-broker-test');
    const topic = uniqueName('late');
    let retries = 0;
    const setUp = ensureTopics(kafka, [{ topic, numPartitions: 2 }], { onRetry: () => retries++ });
    let settled = false;
    void setUp.then(
      () => (settled = true),
      () => (settled = true),
    );
    await new Promise((resolve) => setTimeout(resolve, 3000));
    expect(settled).toBe(false);
    broker = await startKafka(dir, { port, controllerPort, dir, logFile: '', pid: 0, brokers: '' }, () => {}, defaultCacheDir());
    expect(broker.port).toBe(port);
    await setUp;
    expect(retries).toBeGreaterThan(0);
    const admin = kafka.admin();
    await admin.connect();
    try {
      expect(await admin.listTopics()).toContain(topic);
    } finally {
      await admin.disconnect();
    }
  }, 180_000);

  it('a reader subscribed to a topic the broker does not know yet reads it soon after it is created, not after the 5-minute metadata refresh', async () => {
    // What a scorer sees when it subscribes a moment before its topic exists, or when the broker
    // it asks has not learnt of a topic just created (a busy broker, another broker of a cluster):
    // librdkafka looks an unknown subscribed topic up again only at its periodic metadata refresh.
    const topic = uniqueName('late_topic');
    const handled: string[] = [];
    const consumer = createKeyParallelConsumer({
      brokers: kafkaBrokers(),
      groupId: uniqueName('late_topic_reader'),
      topics: [topic],
      orderingKeyOf: (m) => String(m.key),
      maxInFlightPerPartition: 10,
      commitIntervalMs: 200,
      logger: silentLogger(),
      handle: async (message) => void handled.push(String(message.value)),
      deadLetter: async () => {},
    });
    await consumer.start();
    const kafka = createKafka(kafkaBrokers(), 'evalbox-test-admin');
    const producer = createIdempotentProducer(kafka);
    try {
      // Long enough for the reader to have asked for the topic and been told it does not exist.
      await new Promise((resolve) => setTimeout(resolve, 3_000));
      await ensureTopics(kafka, [{ topic, numPartitions: 1 }]);
      await producer.connect();
      await producer.send({ topic, messages: [{ key: 'k', value: 'first' }] });
      await waitFor(() => handled.length === 1, { what: 'the reader to read the topic created after it subscribed', timeoutMs: 30_000 });
      expect(handled).toEqual(['first']);
    } finally {
      await producer.disconnect();
      await consumer.stop(1_000);
    }
  }, 60_000);
});
