// A Kafka consumer runtime with key-level parallelism inside a partition. Messages with the same
// ordering key run strictly one after another; different keys run concurrently, even within one
// partition. Offsets are committed only up to the highest CONTIGUOUS completed offset of each
// partition (partition-progress.ts), and count as committed only once the broker acknowledged
// them (offset-commits.ts). In-flight work per partition is bounded: a full partition is paused
// and resumed when it drains. On revocation the partition's finished prefix is committed (not when
// the assignment was lost) and its in-flight work is aborted (rebalance.ts). A handler failure that retrying can fix is retried
// with backoff; any other failure ends the message through `deadLetter`, so nothing a message
// contains keeps its partition from moving.
import { EventEmitter, setMaxListeners } from 'node:events';
import kafkaJs from '@confluentinc/kafka-javascript';
import { LIBRDKAFKA_LOG_LEVEL, READER_SETTINGS, classifyKafkaError, routeLibrdkafkaLogs } from '../src/kafka.js';
import type { Logger } from '../src/logging.js';
import { isRetryable } from '../src/errors.js';
import { sleep, withRetry, type BackoffPolicy } from '../src/retry.js';
import { commitDueAsync, commitDueSync, parsePartitionKey, partitionKey, type CommitTransport, type TopicPartitionOffset } from './offset-commits.js';
import { PartitionProgress, type InFlightLimits } from './partition-progress.js';

export const DEFAULT_MAX_IN_FLIGHT_BYTES = 64 * 1024 * 1024;

/** What a consumed message holds in memory while it is in flight. */
function messageBytes(message: ConsumedMessage): number {
  let bytes = (message.value?.length ?? 0) + (message.key?.length ?? 0);
  for (const [name, value] of Object.entries(message.headers)) bytes += name.length + value.length;
  return bytes;
}
import { assignPartitions, revokePartitions } from './rebalance.js';

export { PartitionProgress } from './partition-progress.js';

const { KafkaConsumer } = kafkaJs;
// The typings omit the cooperative (incremental) assignment calls the library has.
type RdKafkaConsumer = InstanceType<typeof KafkaConsumer> & {
  incrementalAssign(assignments: { topic: string; partition: number }[]): void;
  incrementalUnassign(assignments: { topic: string; partition: number }[]): void;
  assignmentLost(): boolean;
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
  'consumer:deadLettered': [{ topic: string; partition: number; offset: number; error: unknown }];
  /** A message that could be neither handled nor dead-lettered; logged and passed over. */
  'consumer:skipped': [{ topic: string; partition: number; offset: number; error: unknown }];
  'consumer:commitFailed': [{ error: unknown }];
}

export interface KeyParallelConsumerOptions {
  brokers: string;
  groupId: string;
  topics: string[];
  /**
   * Resolves once the message's effects are durable. A RetryableError means "try again later";
   * any other error means retrying cannot help, and the message goes to `deadLetter`. The signal
   * fires at shutdown and when the message's partition is revoked.
   */
  handle(message: ConsumedMessage, signal: AbortSignal): Promise<void>;
  /** Ends a message whose handling failed for good (e.g. a DLT record). A RetryableError retries. */
  deadLetter(message: ConsumedMessage, error: unknown): Promise<void>;
  /** Messages with the same ordering key are handled strictly in offset order. */
  orderingKeyOf(message: ConsumedMessage): string;
  /** Pause a partition when this many of its messages are in flight; resume at half. */
  maxInFlightPerPartition: number;
  /**
   * Pause a partition when its messages in flight hold this many bytes (default 64 MiB); resume at
   * half. A count alone lets 500 events of 1 MB each take 500 MB.
   */
  maxInFlightBytesPerPartition?: number;
  commitIntervalMs: number;
  /**
   * An asynchronous commit the broker has not answered after this long (default 30 s) counts as
   * failed and is sent again, so a lost answer cannot hold later commits back.
   */
  commitTimeoutMs?: number;
  logger: Logger;
  events?: EventEmitter<RuntimeEvents>;
  /**
   * The delays between attempts at a message whose handler failed for a passing reason (database
   * or broker unavailable). There is no attempt or age limit: such a message is retried until it
   * succeeds, ends on the DLT, or its partition is revoked or the consumer stops.
   */
  retry?: Pick<BackoffPolicy, 'baseMs' | 'maxMs'>;
  clientId?: string;
  extraConfig?: Record<string, unknown>;
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

export function createKeyParallelConsumer(options: KeyParallelConsumerOptions): KeyParallelConsumer {
  const events = options.events ?? new EventEmitter<RuntimeEvents>();
  const { logger } = options;
  const partitions = new Map<string, PartitionProgress>();
  const keyTails = new Map<string, Promise<void>>();
  const inFlightWork = new Set<Promise<void>>();
  const stopping = new AbortController();
  // Every waiting retry listens to it; hundreds may be in flight at once.
  setMaxListeners(0, stopping.signal);
  let running = false;
  let held = false;
  let loop: Promise<void> | undefined;
  let commitTimer: NodeJS.Timeout | undefined;
  let commitUnderWay: Promise<boolean> | undefined;

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
      ...READER_SETTINGS,
      log_level: LIBRDKAFKA_LOG_LEVEL,
      rebalance_cb: onRebalance,
      // Each commit's real outcome (the 'offset.commit' event): commit() only queues it.
      offset_commit_cb: true,
      ...options.extraConfig,
    },
    { 'auto.offset.reset': 'earliest' },
  ) as RdKafkaConsumer;
  routeLibrdkafkaLogs(consumer, logger, options.clientId ?? 'evalbox-scorer');

  const commitTimeoutMs = options.commitTimeoutMs ?? 30_000;
  // Commits sent and not answered yet. commitCb would call back once librdkafka has QUEUED the
  // commit, not when the broker answered it (with the broker gone, an offset would be taken for
  // committed at once); the answer comes through librdkafka's offset commit callback.
  const awaitingAnswer = new Set<{ offsets: TopicPartitionOffset[]; done: (error: unknown) => void }>();
  consumer.on('offset.commit', (error: unknown, answered: TopicPartitionOffset[] | undefined) => {
    for (const waiting of [...awaitingAnswer]) {
      const all = waiting.offsets.every((o) => answered?.some((a) => a.topic === o.topic && a.partition === o.partition && a.offset === o.offset));
      if (!all) continue;
      awaitingAnswer.delete(waiting);
      waiting.done(error ?? undefined);
    }
  });
  const transport: CommitTransport = {
    commitAsync: (offsets, done) => {
      consumer.commit(offsets); // throws when librdkafka refuses it at once
      const waiting = { offsets, done };
      awaitingAnswer.add(waiting);
      return () => awaitingAnswer.delete(waiting);
    },
    commitSync: (offsets) => consumer.commitSync(offsets),
  };
  const onAcknowledged = (offset: TopicPartitionOffset) => events.emit('consumer:committed', offset);
  const onCommitFailed = (error: unknown) => {
    // Not committed is safe: the next round sends it again, and handlers are idempotent.
    logger.warn({ err: error }, 'offset commit failed; it is sent again');
    events.emit('consumer:commitFailed', { error });
  };

  function onRebalance(this: RdKafkaConsumer, error: { code: number }, assignment: { topic: string; partition: number }[]): void {
    try {
      if (error.code === ERR_ASSIGN) {
        assignPartitions(partitions, assignment);
        consumer.incrementalAssign(assignment);
        if (held) consumer.pause(assignment);
        events.emit('consumer:assigned', assignment);
      } else if (error.code === ERR_REVOKE) {
        // Lost (session timed out, coordinator gone): the partitions are already someone else's and a
        // commit cannot succeed; a synchronous one would only block the event loop until it gives up.
        revokePartitions(partitions, assignment, transport, {
          lost: consumer.assignmentLost(),
          onAcknowledged,
          onFailed: (commitError) => logger.warn({ err: commitError }, 'commit on revoke failed; the new owner redelivers from the last commit'),
        });
        consumer.incrementalUnassign(assignment);
        events.emit('consumer:revoked', assignment);
      }
    } catch (rebalanceError) {
      logger.error({ err: rebalanceError }, 'rebalance handling failed');
    }
  }

  function commitRound(): void {
    if (commitUnderWay) return; // one asynchronous commit at a time
    const round = commitDueAsync(partitions, transport, onAcknowledged, onCommitFailed, commitTimeoutMs);
    commitUnderWay = round;
    void round.finally(() => {
      if (commitUnderWay === round) commitUnderWay = undefined;
    });
  }

  function maybePause(message: ConsumedMessage, progress: PartitionProgress): void {
    if (!progress.paused && progress.full(limits)) {
      progress.paused = true;
      consumer.pause([{ topic: message.topic, partition: message.partition }]);
      events.emit('consumer:paused', { topic: message.topic, partition: message.partition });
    }
  }

  function maybeResume(message: ConsumedMessage, progress: PartitionProgress): void {
    if (progress.paused && !progress.revoked && !held && progress.drained(limits)) {
      progress.paused = false;
      consumer.resume([{ topic: message.topic, partition: message.partition }]);
      events.emit('consumer:resumed', { topic: message.topic, partition: message.partition });
    }
  }

  /**
   * Ends a message that failed for good: dead-lettered, or passed over when even that fails for
   * good. Throws the DLT's error when that can pass (the broker unavailable): retried like a handler.
   */
  async function giveUp(message: ConsumedMessage, error: unknown): Promise<void> {
    const where = { topic: message.topic, partition: message.partition, offset: message.offset };
    try {
      await options.deadLetter(message, error);
      events.emit('consumer:deadLettered', { ...where, error });
    } catch (deadLetterError) {
      if (isRetryable(deadLetterError)) throw deadLetterError;
      // Neither handled nor dead-lettered, and never will be: holding the partition would stop
      // every later message of it, so it is passed over, loudly.
      logger.error({ ...where, err: error, deadLetterError }, 'message could not be handled nor dead-lettered; passed over');
      events.emit('consumer:skipped', { ...where, error });
    }
  }

  const limits: InFlightLimits = { messages: options.maxInFlightPerPartition, bytes: options.maxInFlightBytesPerPartition ?? DEFAULT_MAX_IN_FLIGHT_BYTES };

  const handlerRetry: BackoffPolicy = {
    baseMs: options.retry?.baseMs ?? 200,
    maxMs: options.retry?.maxMs ?? 10_000,
    maxAttempts: Number.MAX_SAFE_INTEGER,
    maxAgeMs: Number.POSITIVE_INFINITY,
  };

  /**
   * Runs the handler until the message is done (handled, or ended by giveUp); false when stopped or
   * revoked first: an abort is never an outcome, the offset stays uncommitted and is redelivered.
   */
  async function handleUntilDone(message: ConsumedMessage, progress: PartitionProgress): Promise<boolean> {
    const signal = AbortSignal.any([stopping.signal, progress.signal]);
    if (signal.aborted) return false;
    try {
      await withRetry(
        async (attempt) => {
          try {
            await options.handle(message, signal);
          } catch (error) {
            if (signal.aborted) throw error;
            events.emit('consumer:handlerFailed', { topic: message.topic, partition: message.partition, offset: message.offset, error, attempt });
            if (isRetryable(error)) throw error;
            await giveUp(message, error);
          }
        },
        handlerRetry,
        // Only a passing failure (of the handler or of the DLT) gets here; only an abort ends it.
        { signal, retryable: () => true },
      );
      return true;
    } catch (error) {
      if (!signal.aborted) logger.error({ topic: message.topic, partition: message.partition, offset: message.offset, err: error }, 'handler retry ended');
      return false;
    }
  }

  function dispatch(message: ConsumedMessage): void {
    const progress = partitions.get(partitionKey(message.topic, message.partition));
    if (!progress) return; // not ours (any more)
    progress.add(message.offset, message.timestamp, messageBytes(message));
    const chainKey = `${message.topic}|${message.partition}|${options.orderingKeyOf(message)}`;
    const previous = keyTails.get(chainKey) ?? Promise.resolve();
    const started = Date.now();
    const work = previous.then(async () => {
      try {
        // Stopped or revoked: the offset stays uncommitted and is redelivered.
        if (!(await handleUntilDone(message, progress))) return;
        progress.complete(message.offset);
        events.emit('consumer:processed', {
          topic: message.topic,
          partition: message.partition,
          offset: message.offset,
          seconds: (Date.now() - started) / 1000,
        });
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
        await sleep(500, stopping.signal);
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

  const assigned = () => [...partitions.keys()].map(parsePartitionKey);

  /** Waits for `promise` at most `ms`, leaving no timer behind either way. */
  async function waitAtMost(promise: Promise<unknown>, ms: number): Promise<void> {
    const timer = new AbortController();
    await Promise.race([promise, sleep(ms, timer.signal)]);
    timer.abort();
  }

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
      // A partition paused for its in-flight bound whose work drained during the hold had its
      // resume skipped (maybeResume waits while held): resume it now, or it stays paused for good.
      const ready = assigned().filter((tp) => {
        const progress = partitions.get(partitionKey(tp.topic, tp.partition));
        if (progress?.paused && progress.drained(limits)) progress.paused = false;
        return progress !== undefined && !progress.paused;
      });
      if (ready.length > 0) consumer.resume(ready);
      for (const tp of ready) events.emit('consumer:resumed', tp);
    },
    async start() {
      await new Promise<void>((resolve, reject) => consumer.connect({ timeout: 30_000 }, (error) => (error ? reject(classifyKafkaError(error)) : resolve())));
      consumer.setDefaultConsumeTimeout(100);
      consumer.subscribe(options.topics);
      running = true;
      loop = runLoop();
      commitTimer = setInterval(commitRound, options.commitIntervalMs);
    },
    async stop(graceMs = 20_000) {
      running = false;
      await loop;
      clearInterval(commitTimer);
      // Drain: let in-flight work finish within the grace period, then abort the rest (it is
      // redelivered: an aborted handler never ends a message).
      await waitAtMost(Promise.allSettled([...inFlightWork]), graceMs);
      stopping.abort();
      await waitAtMost(Promise.allSettled([...inFlightWork]), 2_000);
      if (commitUnderWay) await waitAtMost(commitUnderWay, 5_000);
      commitDueSync(partitions, transport, onAcknowledged, onCommitFailed);
      await waitAtMost(new Promise<void>((resolve) => consumer.disconnect(() => resolve())), 10_000);
    },
    async watermarks() {
      const result = [];
      for (const [key, progress] of partitions) {
        const { topic, partition } = parsePartitionKey(key);
        const high = await new Promise<number>((resolve) => {
          consumer.queryWatermarkOffsets(topic, partition, 2_000, (error, offsets) => resolve(error ? Number.NaN : offsets.highOffset));
        });
        result.push({
          topic,
          partition,
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
