// `evalbox stack up --brokers 3`: a real three-node KRaft cluster on loopback. Topics created
// with the broker defaults are replicated three times with min.insync.replicas=2, so producing
// with acks=all goes on while one broker is killed (kill -9), and the broker rejoins the ISR
// after a restart. The cluster is private to this test (the suite's broker stays up).
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { defaultCacheDir } from '../src/config.js';
import { createIdempotentProducer, createKafka, type Admin } from '../src/kafka.js';
import { restartKafkaNode, startKafkaCluster, stopKafkaCluster, type KafkaClusterState } from '../src/stack/kafka-cluster.js';
import { pidAlive } from '../src/stack/process.js';
import { uniqueName, waitFor } from './helpers.js';

describe('a three-broker cluster', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'evalbox-cluster-'));
  let cluster: KafkaClusterState | undefined;
  let admin: Admin | undefined;
  const log = () => {};

  beforeAll(async () => {
    cluster = await startKafkaCluster(dir, 3, undefined, log, defaultCacheDir());
  }, 180_000);
  afterAll(async () => {
    await admin?.disconnect();
    if (cluster) await stopKafkaCluster(cluster);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const partitionsOf = async (topic: string) => {
    const [metadata] = await (admin as Admin).fetchTopicMetadata({ topics: [topic] });
    return metadata?.partitions ?? [];
  };

  it('replicates a new topic three times and keeps acks=all producing through a kill -9 of one broker', async () => {
    const { brokers, nodes } = cluster as KafkaClusterState;
    const kafka = createKafka(brokers, 'evalbox-cluster-test');
    admin = kafka.admin();
    await admin.connect();
    const topic = uniqueName('cluster');
    await waitFor(
      async () => {
        // A create that timed out may still have happened: the metadata decides.
        await admin?.createTopics({ topics: [{ topic, numPartitions: 3, replicationFactor: -1 }] }).catch(() => undefined);
        return (await partitionsOf(topic)).length === 3;
      },
      {
        what: 'the topic (the controller may still be electing)',
        timeoutMs: 60_000,
        intervalMs: 1000,
      },
    );
    const before = await waitFor(
      async () => {
        const partitions = await partitionsOf(topic);
        return partitions.length === 3 && partitions.every((p) => p.isr.length === 3) && partitions;
      },
      { what: 'three in-sync replicas per partition', timeoutMs: 60_000, intervalMs: 500 },
    );
    expect(before.map((p) => p.replicas.length)).toEqual([3, 3, 3]);

    const victim = nodes[1];
    if (!victim) throw new Error('no second node');
    process.kill(victim.pid, 'SIGKILL');
    await waitFor(() => !pidAlive(victim.pid), { what: 'the broker to die' });

    const producer = createIdempotentProducer(kafka);
    await producer.connect();
    try {
      const messages = Array.from({ length: 200 }, (_, i) => ({ key: `k${i % 7}`, value: String(i) }));
      const reports = await producer.send({ topic, messages });
      expect(reports.every((r) => r.errorCode === 0)).toBe(true);
    } finally {
      await producer.disconnect();
    }

    await restartKafkaNode(cluster as KafkaClusterState, victim.nodeId, log, defaultCacheDir());
    await waitFor(async () => (await partitionsOf(topic)).every((p) => p.isr.length === 3), {
      what: 'the restarted broker back in every ISR',
      timeoutMs: 90_000,
      intervalMs: 1000,
    });
  }, 240_000);
});
