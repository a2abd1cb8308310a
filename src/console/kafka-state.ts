// What the console asks Kafka: consumer lag per partition (the group's committed offsets against
// the high watermarks, from the admin API) and how many dead letters arrived in a time window
// (offsets by timestamp). One admin client, connected on first use and reused.
import kafkaJs from '@confluentinc/kafka-javascript';
import { classifyKafkaError, createKafka, kafkaCodes, type Admin } from '../kafka.js';
import type { Logger } from '../logging.js';

export interface PartitionLag {
  topic: string;
  partition: number;
  /** The group's committed offset (the next offset it will process); null when it has none. */
  committed: number | null;
  high: number;
  low: number;
  lag: number;
}

export interface KafkaState {
  consumerLag(groupId: string, topic: string): Promise<PartitionLag[]>;
  /** Records on `topic` with a timestamp at or after `sinceMs`, and in total. */
  recordsSince(topic: string, sinceMs: number): Promise<{ inWindow: number; total: number }>;
  /** Where the event with CloudEvents id `eventId` sits on `topic`, searched from `sinceMs` on. */
  findEvent(topic: string, eventId: string, sinceMs: number): Promise<EventPosition | undefined>;
  close(): Promise<void>;
}

export interface EventPosition {
  partition: number;
  offset: number;
  timestamp: number;
}

/** At most this many records are read to find one event (it is normally among the first). */
const FIND_BUDGET = { records: 5_000, ms: 5_000 };

const TIMEOUT_MS = 5_000;

/** A topic that does not exist yet (created by the first scorer or relay) is empty, not an error. */
export function isUnknownTopic(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return code === kafkaCodes.ERR_UNKNOWN_TOPIC_OR_PART || code === kafkaCodes.ERR__UNKNOWN_TOPIC;
}

async function orEmpty<T>(work: Promise<T>, empty: T): Promise<T> {
  try {
    return await work;
  } catch (error) {
    if (isUnknownTopic(error)) return empty;
    throw error;
  }
}

/**
 * A client connected on first use and shared by every caller; a failed connect is forgotten, so
 * the next use tries again instead of failing for good.
 */
export function sharedConnection<T extends { connect(): Promise<unknown>; disconnect(): Promise<unknown> }>(create: () => T) {
  let pending: Promise<T> | undefined;
  return {
    get(): Promise<T> {
      if (!pending) {
        const client = create();
        pending = client.connect().then(
          () => client,
          (error: unknown) => {
            pending = undefined;
            throw error;
          },
        );
      }
      return pending;
    },
    forget(): void {
      pending = undefined;
    },
    async close(): Promise<void> {
      const current = pending;
      pending = undefined;
      if (current) await (await current.catch(() => undefined))?.disconnect().catch(() => {});
    },
  };
}

export function createKafkaState(brokers: string, logger?: Logger): KafkaState {
  const admin = sharedConnection(() => createKafka(brokers, 'evalbox-console', logger).admin());

  /** Runs one admin call; a failed call drops the client so the next one reconnects. */
  async function call<T>(work: (a: Admin) => Promise<T>): Promise<T> {
    const client = await admin.get();
    try {
      return await work(client);
    } catch (error) {
      admin.forget();
      await client.disconnect().catch(() => {});
      throw error;
    }
  }

  return {
    consumerLag: (groupId, topic) =>
      orEmpty(
        call(async (a) => {
          const [watermarks, committed] = await Promise.all([
            a.fetchTopicOffsets(topic, { timeout: TIMEOUT_MS } as never),
            a.fetchOffsets({ groupId, topics: [topic], timeout: TIMEOUT_MS }),
          ]);
          const byPartition = new Map((committed.find((t) => t.topic === topic)?.partitions ?? []).map((p) => [p.partition, Number(p.offset)]));
          return watermarks
            .map((w) => {
              const high = Number(w.high);
              const low = Number(w.low);
              const offset = byPartition.get(w.partition);
              const hasOffset = offset !== undefined && offset >= 0;
              // A group with no committed offset starts at the earliest record (evalbox consumers read from the beginning).
              return { topic, partition: w.partition, committed: hasOffset ? offset : null, high, low, lag: Math.max(0, high - (hasOffset ? offset : low)) };
            })
            .sort((x, y) => x.partition - y.partition);
        }),
        [],
      ),
    recordsSince: (topic, sinceMs) =>
      orEmpty(
        call(async (a) => {
          const [watermarks, atTime] = await Promise.all([
            a.fetchTopicOffsets(topic, { timeout: TIMEOUT_MS } as never),
            a.fetchTopicOffsetsByTimestamp(topic, sinceMs, { timeout: TIMEOUT_MS } as never),
          ]);
          const start = new Map(atTime.map((p) => [p.partition, Number(p.offset)]));
          let inWindow = 0;
          let total = 0;
          for (const w of watermarks) {
            const high = Number(w.high);
            total += high - Number(w.low);
            // -1: no record at or after the time, so none in the window.
            const from = start.get(w.partition) ?? -1;
            if (from >= 0) inWindow += Math.max(0, high - from);
          }
          return { inWindow, total };
        }),
        { inWindow: 0, total: 0 },
      ),
    async findEvent(topic, eventId, sinceMs) {
      const starts = (
        await orEmpty(
          call((a) => a.fetchTopicOffsetsByTimestamp(topic, sinceMs, { timeout: TIMEOUT_MS } as never)),
          [],
        )
      ).filter((p) => Number(p.offset) >= 0);
      if (starts.length === 0) return undefined;
      return findByHeader(
        brokers,
        topic,
        starts.map((p) => ({ partition: p.partition, offset: Number(p.offset) })),
        eventId,
      );
    },
    async close() {
      await admin.close();
    },
  };
}

/** Reads from the given positions until a record's ce_id header is `eventId` or the budget is spent. */
async function findByHeader(
  brokers: string,
  topic: string,
  from: { partition: number; offset: number }[],
  eventId: string,
): Promise<EventPosition | undefined> {
  const consumer = new kafkaJs.KafkaConsumer(
    { 'bootstrap.servers': brokers, 'group.id': `evalbox-console-find-${process.pid}`, 'enable.auto.commit': false, log_level: 3 },
    {},
  );
  await new Promise<void>((resolve, reject) => consumer.connect({ timeout: TIMEOUT_MS }, (error) => (error ? reject(classifyKafkaError(error)) : resolve())));
  try {
    consumer.assign(from.map((p) => ({ topic, partition: p.partition, offset: p.offset })));
    const deadline = Date.now() + FIND_BUDGET.ms;
    let read = 0;
    while (Date.now() < deadline && read < FIND_BUDGET.records) {
      const batch = await new Promise<kafkaJs.Message[]>((resolve, reject) =>
        consumer.consume(500, (error, messages) => (error ? reject(classifyKafkaError(error)) : resolve(messages))),
      );
      read += batch.length;
      for (const m of batch) {
        const header = (m.headers ?? []).find((h) => 'ce_id' in h)?.ce_id;
        if (header !== undefined && String(header) === eventId) return { partition: m.partition, offset: m.offset, timestamp: m.timestamp ?? 0 };
      }
    }
    return undefined;
  } finally {
    await new Promise<void>((resolve) => consumer.disconnect(() => resolve()));
  }
}
