// A Kafka consumer runtime with key-level parallelism inside a partition. Messages with the same
// ordering key run strictly one after another; different keys run concurrently, even within one
// partition. Offsets are committed only up to the highest CONTIGUOUS completed offset of each
// partition, so a slow key never lets a later offset be committed before it is done, and a fast
// key never waits for a commit map to fill (no offset-map stalls). In-flight work per partition
// is bounded: a full partition is paused and resumed when it drains. On revocation the
// partition's finished prefix is committed and unfinished work is abandoned (its completions are
// no longer committed; the new owner redelivers it and idempotent handlers make that safe).
import { EventEmitter, setMaxListeners } from 'node:events';
import kafkaJs from '@confluentinc/kafka-javascript';
import { LIBRDKAFKA_LOG_LEVEL, classifyKafkaError, routeLibrdkafkaLogs } from '../src/kafka.js';
import type { Logger } from '../src/logging.js';
import { fullJitterDelay, sleep } from '../src/retry.js';

const { KafkaConsumer } = kafkaJs;
// The typings omit the cooperative (incremental) assignment calls the library has.
type RdKafkaConsumer = InstanceType<typeof KafkaConsumer> & {
  incrementalAssign(assignments: { topic: string; partition: number }[]): void;
  incrementalUnassign(assignments: { topic: string; partition: number }[]): void;
};

const ERR_ASSIGN = -175;
const ERR_REVOKE = -174;

export interface ConsumedMessage {
  topic: string;
  partition: number;
  offset: number;
  key: string | null;
  value: Buffer | null;
  headers: Record<string, Buffer>;
  /** Broker timestamp (ms). */
  timestamp: number;
}

export interface RuntimeEvents {
  'consumer:assigned': [{ topic: string; partition: number }[]];
  'consumer:revoked': [{ topic: string; partition: number }[]];
  'consumer:paused': [{ topic: string; partition: number }];
  'consumer:resumed': [{ topic: string; partition: number }];
  'consumer:committed': [{ topic: string; partition: number; offset: number }];
  'consumer:handlerFailed': [{ topic: string; partition: number; offset: number; error: unknown; attempt: number }];
  'consumer:processed': [{ topic: string; partition: number; offset: number; seconds: number }];
}

export interface KeyParallelConsumerOptions {
  brokers: string;
  groupId: string;
  topics: string[];
  /** Resolves once the message's effects are durable. Throwing means "try again later". */
  handle(message: ConsumedMessage, signal: AbortSignal): Promise<void>;
  /** Messages with the same ordering key are handled strictly in offset order. */
  orderingKeyOf(message: ConsumedMessage): string;
  /** Pause a partition when this many of its messages are in flight; resume at half. */
  maxInFlightPerPartition: number;
  commitIntervalMs: number;
  logger: Logger;
  events?: EventEmitter<RuntimeEvents>;
  clientId?: string;
  extraConfig?: Record<string, unknown>;
}

/** Tracks one partition's in-flight offsets and the next offset that may be committed. */
export class PartitionProgress {
  private readonly queue: number[] = [];
  private head = 0;
  private readonly done = new Set<number>();
  private readonly timestamps = new Map<number, number>();
  /** The offset to commit next (Kafka semantics: the next offset to read), if it moved. */
  commitable: number | undefined;
  committed: number | undefined;
  revoked = false;
  paused = false;

  add(offset: number, timestamp: number): void {
    this.queue.push(offset);
    this.timestamps.set(offset, timestamp);
  }

  complete(offset: number): void {
    this.done.add(offset);
    while (this.head < this.queue.length && this.done.has(this.queue[this.head] as number)) {
      const finished = this.queue[this.head] as number;
      this.done.delete(finished);
      this.timestamps.delete(finished);
      this.head++;
      this.commitable = finished + 1;
    }
    // Compact the consumed prefix now and then.
    if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue.splice(0, this.head);
      this.head = 0;
    }
  }

  inFlight(): number {
    return this.queue.length - this.head;
  }

  /** Timestamp of the oldest message not yet completed, for time lag. */
  oldestPendingTimestamp(): number | undefined {
    const offset = this.queue[this.head];
    return offset === undefined ? undefined : this.timestamps.get(offset);
  }

  lastSeenOffset(): number | undefined {
    return this.queue[this.queue.length - 1];
  }
}

export interface KeyParallelConsumer {
  events: EventEmitter<RuntimeEvents>;
  start(): Promise<void>;
  /** Stops fetching, waits up to graceMs for in-flight work, commits, disconnects. */
  stop(graceMs?: number): Promise<void>;
  progress(): Map<string, PartitionProgress>;
  inFlight(): number;
  /** Stops fetching from every partition (in-flight work goes on), e.g. while a provider is down. */
  hold(): void;
  /** Undoes hold(): resumes the partitions that are not paused for back-pressure. */
  release(): void;
  held(): boolean;
  /** The high watermark per partition, for lag metrics. */
  watermarks(): Promise<
    {
      topic: string;
      partition: number;
      high: number;
      committed: number | undefined;
      lastSeen: number | undefined;
      oldestPendingTimestamp: number | undefined;
    }[]
  >;
}

const tpKey = (topic: string, partition: number) => `${topic}|${partition}`;

export function createKeyParallelConsumer(options: KeyParallelConsumerOptions): KeyParallelConsumer {
  const events = options.events ?? new EventEmitter<RuntimeEvents>();
  const { logger } = options;
  const partitions = new Map<string, PartitionProgress>();
  const keyTails = new Map<string, Promise<void>>();
  const inFlightWork = new Set<Promise<void>>();
  const abort = new AbortController();
  // Every waiting retry listens to it; hundreds may be in flight at once.
  setMaxListeners(0, abort.signal);
  let running = false;
  let held = false;
  let loop: Promise<void> | undefined;
  let commitTimer: NodeJS.Timeout | undefined;

  const consumer = new KafkaConsumer(
    {
      'bootstrap.servers': options.brokers,
      'group.id': options.groupId,
      'client.id': options.clientId ?? 'evalbox-scorer',
      'enable.auto.commit': false,
      'enable.auto.offset.store': false,
      'partition.assignment.strategy': 'cooperative-sticky',
      'session.timeout.ms': 10_000,
      'heartbeat.interval.ms': 1_000,
      'max.poll.interval.ms': 300_000,
      log_level: LIBRDKAFKA_LOG_LEVEL,
      rebalance_cb: onRebalance,
      ...options.extraConfig,
    },
    { 'auto.offset.reset': 'earliest' },
  ) as RdKafkaConsumer;
  routeLibrdkafkaLogs(consumer, logger, options.clientId ?? 'evalbox-scorer');

  function onRebalance(this: RdKafkaConsumer, error: { code: number }, assignment: { topic: string; partition: number }[]): void {
    try {
      if (error.code === ERR_ASSIGN) {
        for (const tp of assignment) partitions.set(tpKey(tp.topic, tp.partition), new PartitionProgress());
        consumer.incrementalAssign(assignment);
        if (held) consumer.pause(assignment);
        events.emit('consumer:assigned', assignment);
      } else if (error.code === ERR_REVOKE) {
        // Commit the finished prefix of each revoked partition, then abandon the rest.
        const offsets = [];
        for (const tp of assignment) {
          const progress = partitions.get(tpKey(tp.topic, tp.partition));
          if (!progress) continue;
          progress.revoked = true;
          if (progress.commitable !== undefined && progress.commitable !== progress.committed)
            offsets.push({ topic: tp.topic, partition: tp.partition, offset: progress.commitable });
          partitions.delete(tpKey(tp.topic, tp.partition));
        }
        if (offsets.length > 0) {
          try {
            consumer.commitSync(offsets);
          } catch (commitError) {
            logger.warn({ err: commitError }, 'commit on revoke failed; the new owner redelivers from the last commit');
          }
        }
        consumer.incrementalUnassign(assignment);
        events.emit('consumer:revoked', assignment);
      }
    } catch (rebalanceError) {
      logger.error({ err: rebalanceError }, 'rebalance handling failed');
    }
  }

  function commitProgress(sync: boolean): void {
    const offsets = [];
    for (const [key, progress] of partitions) {
      if (progress.revoked || progress.commitable === undefined || progress.commitable === progress.committed) continue;
      const [topic, partition] = key.split('|') as [string, string];
      offsets.push({ topic, partition: Number(partition), offset: progress.commitable });
      progress.committed = progress.commitable;
    }
    if (offsets.length === 0) return;
    try {
      if (sync) consumer.commitSync(offsets);
      else consumer.commit(offsets);
      for (const o of offsets) events.emit('consumer:committed', o);
    } catch (error) {
      // Not committing is safe: the work is redelivered and handlers are idempotent.
      logger.warn({ err: error }, 'offset commit failed');
      for (const o of offsets) {
        const progress = partitions.get(tpKey(o.topic, o.partition));
        if (progress) progress.committed = undefined;
      }
    }
  }

  function maybePause(message: ConsumedMessage, progress: PartitionProgress): void {
    if (!progress.paused && progress.inFlight() >= options.maxInFlightPerPartition) {
      progress.paused = true;
      consumer.pause([{ topic: message.topic, partition: message.partition }]);
      events.emit('consumer:paused', { topic: message.topic, partition: message.partition });
    }
  }

  function maybeResume(message: ConsumedMessage, progress: PartitionProgress): void {
    if (progress.paused && !progress.revoked && !held && progress.inFlight() <= options.maxInFlightPerPartition / 2) {
      progress.paused = false;
      consumer.resume([{ topic: message.topic, partition: message.partition }]);
      events.emit('consumer:resumed', { topic: message.topic, partition: message.partition });
    }
  }

  /** Runs the handler until it succeeds; a thrown error means the work is not done yet. */
  async function handleUntilDone(message: ConsumedMessage): Promise<void> {
    for (let attempt = 1; !abort.signal.aborted; attempt++) {
      try {
        await options.handle(message, abort.signal);
        return;
      } catch (error) {
        events.emit('consumer:handlerFailed', { topic: message.topic, partition: message.partition, offset: message.offset, error, attempt });
        await sleep(fullJitterDelay({ baseMs: 200, maxMs: 10_000 }, attempt), abort.signal);
      }
    }
    throw new Error('stopped before the message was handled');
  }

  function dispatch(message: ConsumedMessage): void {
    const progress = partitions.get(tpKey(message.topic, message.partition));
    if (!progress) return; // not ours (any more)
    progress.add(message.offset, message.timestamp);
    const chainKey = `${message.topic}|${message.partition}|${options.orderingKeyOf(message)}`;
    const previous = keyTails.get(chainKey) ?? Promise.resolve();
    const started = Date.now();
    const work = previous.then(async () => {
      try {
        await handleUntilDone(message);
        progress.complete(message.offset);
        events.emit('consumer:processed', {
          topic: message.topic,
          partition: message.partition,
          offset: message.offset,
          seconds: (Date.now() - started) / 1000,
        });
      } catch {
        // stopped: the offset stays uncommitted and is redelivered
      } finally {
        maybeResume(message, progress);
      }
    });
    keyTails.set(chainKey, work);
    inFlightWork.add(work);
    void work.finally(() => {
      inFlightWork.delete(work);
      if (keyTails.get(chainKey) === work) keyTails.delete(chainKey);
    });
    maybePause(message, progress);
  }

  const consumeBatch = () =>
    new Promise<kafkaJs.Message[]>((resolve, reject) => {
      // Never take more at once than one partition may hold in flight, so pausing bounds memory.
      consumer.consume(Math.max(1, Math.min(500, options.maxInFlightPerPartition)), (error, messages) =>
        error ? reject(classifyKafkaError(error)) : resolve(messages),
      );
    });

  async function runLoop(): Promise<void> {
    while (running) {
      let messages: kafkaJs.Message[];
      try {
        messages = await consumeBatch();
      } catch (error) {
        logger.warn({ err: error }, 'consume failed; retrying');
        await sleep(500, abort.signal);
        continue;
      }
      for (const m of messages) {
        const headers: Record<string, Buffer> = {};
        for (const header of m.headers ?? []) {
          for (const [name, value] of Object.entries(header)) headers[name] = Buffer.isBuffer(value) ? value : Buffer.from(String(value));
        }
        dispatch({
          topic: m.topic,
          partition: m.partition,
          offset: m.offset,
          key: m.key === undefined || m.key === null ? null : m.key.toString(),
          value: m.value,
          headers,
          timestamp: m.timestamp ?? Date.now(),
        });
      }
      if (messages.length === 0) await sleep(5);
    }
  }

  const assigned = () =>
    [...partitions.keys()].map((key) => {
      const [topic, partition] = key.split('|') as [string, string];
      return { topic, partition: Number(partition) };
    });

  return {
    events,
    progress: () => partitions,
    inFlight: () => inFlightWork.size,
    held: () => held,
    hold() {
      if (held) return;
      held = true;
      const all = assigned();
      if (all.length > 0) consumer.pause(all);
      for (const tp of all) events.emit('consumer:paused', tp);
    },
    release() {
      if (!held) return;
      held = false;
      const ready = assigned().filter((tp) => !partitions.get(tpKey(tp.topic, tp.partition))?.paused);
      if (ready.length > 0) consumer.resume(ready);
      for (const tp of ready) events.emit('consumer:resumed', tp);
    },
    async start() {
      await new Promise<void>((resolve, reject) => consumer.connect({ timeout: 30_000 }, (error) => (error ? reject(classifyKafkaError(error)) : resolve())));
      consumer.setDefaultConsumeTimeout(100);
      consumer.subscribe(options.topics);
      running = true;
      loop = runLoop();
      commitTimer = setInterval(() => commitProgress(false), options.commitIntervalMs);
    },
    async stop(graceMs = 20_000) {
      running = false;
      await loop;
      clearInterval(commitTimer);
      // Drain: let in-flight work finish within the grace period, then abandon the rest.
      const drained = Promise.allSettled([...inFlightWork]);
      const timer = sleep(graceMs);
      await Promise.race([drained, timer]);
      abort.abort();
      await Promise.race([Promise.allSettled([...inFlightWork]), sleep(2_000)]);
      commitProgress(true);
      await new Promise<void>((resolve) => consumer.disconnect(() => resolve()));
    },
    async watermarks() {
      const result = [];
      for (const [key, progress] of partitions) {
        const [topic, partition] = key.split('|') as [string, string];
        const high = await new Promise<number>((resolve) => {
          consumer.queryWatermarkOffsets(topic, Number(partition), 2_000, (error, offsets) => resolve(error ? Number.NaN : offsets.highOffset));
        });
        result.push({
          topic,
          partition: Number(partition),
          high,
          committed: progress.committed,
          lastSeen: progress.lastSeenOffset(),
          oldestPendingTimestamp: progress.oldestPendingTimestamp(),
        });
      }
      return result;
    },
  };
}
