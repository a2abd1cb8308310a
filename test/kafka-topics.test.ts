// A process that starts while its broker is down (a restart of both at once, a broker kill -9
// during a deploy) waits for the broker instead of exiting: ensureTopics retries with backoff
// until a broker answers on the address. The broker is private to this test.
import { afterAll, describe, expect, it } from '@jest/globals';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { defaultCacheDir } from '../src/config.js';
import { createKafka, ensureTopics } from '../src/kafka.js';
import { startKafka, stopKafka, type KafkaState } from '../src/stack/kafka.js';
import { freePort } from '../src/stack/process.js';
import { uniqueName } from './helpers.js';

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
});
