// One shard's worker: while its lease holds, reads the next batch below the horizon, publishes it
// as one Kafka transaction, and only after the commit moves the cursor (fenced by the lease epoch).
//
// Fencing works on two levels. Locally, the worker knows until when its lease surely holds (the
// moment the last successful claim or renewal was sent, plus the TTL) and neither starts nor
// commits a transaction past that moment. At Kafka, the shard's producer has a transactional.id
// derived from the shard: a new owner's initTransactions fences every older producer of that id
// and aborts its open transaction, so a leader that was paused past its lease can never commit
// what it had read, whenever it wakes up.
import { performance } from 'node:perf_hooks';
import type { EventEmitter } from 'node:events';
import type { Db } from '../src/db/index.js';
import { coerceError, ConfigError, type EvalboxError } from '../src/errors.js';
import { classifyKafkaError, isFencedKafkaError, type TransactionalProducer } from '../src/kafka.js';
import { withRetry, type BackoffPolicy } from '../src/retry.js';
import { inSpan, ROOT, SpanKind, traceIdOf } from '../src/tracing.js';
import { publishLinks, publishRows } from './publisher.js';
import type { RelayEvents, ResolvedRelaySettings } from './relay.js';
import { parkUnknownTopicsAfter, settleBatch, type UnknownTopicClock } from './settle.js';
import { advanceCursor, cursorAheadOfDatabase, readBatchBelowHorizon, type Cursor, type Lease, type OutboxRow, type ParkedRow } from './sql.js';

export interface ShardWorkerContext {
  db: Db;
  settings: ResolvedRelaySettings;
  events: EventEmitter<RelayEvents>;
  /** A new transactional producer for the shard (its transactional.id derived from the shard). */
  createProducer: (shard: number) => TransactionalProducer;
  /** Aborted when the relay stops: the worker finishes (or gives up) its batch and returns. */
  stopping: AbortSignal;
}

export type LeaseLossReason = 'renew-failed' | 'renew-error' | 'fenced' | 'expired' | 'cursor-ahead' | 'failed';

export interface ShardWorker {
  readonly lease: Lease;
  /** The cursor after the last committed batch. */
  cursor(): Cursor;
  /** True while the lease surely holds: not lost, not given up, and its local deadline not near. */
  holdsLease(): boolean;
  /** A successful renewal sent at `sentAt` (performance.now()) extends the local deadline. */
  renewed(sentAt: number): void;
  markLost(reason: LeaseLossReason): void;
  /** The drain took too long: never commit again; the lease is about to be released. */
  giveUp(): void;
  lost(): boolean;
  wake(): void;
  done: Promise<void>;
}

type BatchResult = 'committed' | 'partial' | 'lost' | 'stopped';

/** What one batch carries from attempt to attempt: the rows parked so far, and since when a topic was unknown. */
interface BatchState {
  parked: ParkedRow[];
  unknownTopic: UnknownTopicClock;
}

const codeOf = (error: unknown): string => (error as { code?: unknown }).code?.toString() ?? 'UNKNOWN';
const batchBytes = (rows: OutboxRow[]): number => rows.reduce((sum, row) => sum + row.payload.length, 0);

export function startShardWorker(ctx: ShardWorkerContext, lease: Lease, claimSentAt: number): ShardWorker {
  const { db, settings, events } = ctx;
  const { shard } = lease;
  // Stop producing this long before the lease could expire in the database.
  const safetyMs = Math.min(500, settings.leaseTtlMs / 4);
  let deadline = claimSentAt + settings.leaseTtlMs;
  let lostReason: LeaseLossReason | undefined;
  let gaveUp = false;
  let cursor = lease.cursor;
  let producer: TransactionalProducer | undefined;
  const nudge = { pending: false, resolve: undefined as (() => void) | undefined };
  // Ends every backoff wait at once: the lease is lost or given up, or the relay stops.
  const leaseGone = new AbortController();
  ctx.stopping.addEventListener('abort', () => leaseGone.abort(), { once: true });

  const holdsLease = () => lostReason === undefined && !gaveUp && performance.now() < deadline - safetyMs;
  const markLost = (reason: LeaseLossReason) => {
    if (lostReason !== undefined) return;
    lostReason = reason;
    leaseGone.abort();
    events.emit('relay:leaseLost', { shard, epoch: lease.epoch, reason });
    wake();
  };
  const wake = () => {
    nudge.pending = true;
    nudge.resolve?.();
  };
  const waitForWork = (ms: number) =>
    new Promise<void>((resolve) => {
      if (nudge.pending || ctx.stopping.aborted || !holdsLease()) return resolve();
      const timer = setTimeout(done, Math.min(ms, Math.max(0, deadline - safetyMs - performance.now())));
      function done() {
        clearTimeout(timer);
        nudge.resolve = undefined;
        ctx.stopping.removeEventListener('abort', done);
        resolve();
      }
      nudge.resolve = done;
      ctx.stopping.addEventListener('abort', done, { once: true });
    });

  async function connectProducer(): Promise<TransactionalProducer> {
    const created = ctx.createProducer(shard);
    try {
      await created.connect(); // initTransactions: fences every older producer of this shard
    } catch (error) {
      await created.disconnect().catch(() => {});
      throw error;
    }
    return created;
  }

  async function replaceProducer(): Promise<void> {
    const old = producer;
    producer = undefined;
    await old?.disconnect().catch(() => {});
  }

  // A failed batch and a failed read are retried on the one retrier, with the configured delays,
  // until the lease is lost or the relay stops (the signal ends the wait at once).
  const backoff: BackoffPolicy = { baseMs: settings.retryBaseMs, maxMs: settings.retryMaxMs, maxAttempts: Infinity, maxAgeMs: Infinity };

  /** Sends `rows` as one transaction until it commits, the lease is lost, or the relay stops. */
  function publishBatch(rows: OutboxRow[], unknownTopic: UnknownTopicClock = { since: undefined }): Promise<BatchResult> {
    // One span per batch, linked to the trace of every row it carries (each row's Kafka record
    // carries that row's own traceparent header, from the stored headers).
    const links = publishLinks(rows);
    return inSpan('outbox publish', { kind: SpanKind.PRODUCER, links, parent: ROOT }, async (span) => {
      const result = await publishBatchAttempts(rows, unknownTopic);
      if (span.isRecording())
        span.setAttributes({
          'messaging.system': 'kafka',
          'messaging.batch.message_count': rows.length,
          'evalbox.shard': shard,
          'evalbox.relay.result': result,
        });
      return result;
    });
  }

  async function publishBatchAttempts(rows: OutboxRow[], unknownTopic: UnknownTopicClock): Promise<BatchResult> {
    const state: BatchState = { parked: [], unknownTopic };
    try {
      return await withRetry((attempt) => attemptBatch(rows, state, attempt - 1), backoff, {
        retryable: () => true,
        signal: leaseGone.signal,
        onRetry: (error, attempt, delayMs) => events.emit('relay:batchRetry', { shard, attempt, delayMs, code: codeOf(error) }),
      });
    } catch (error) {
      if (!holdsLease()) return 'lost';
      if (ctx.stopping.aborted) return 'stopped';
      throw error;
    }
  }

  /**
   * One attempt: resolves with the batch's result, or throws the error that calls for a backoff
   * before the next one. Rows that failed for good are left out and the rest sent again at once.
   */
  async function attemptBatch(rows: OutboxRow[], state: BatchState, attempt: number): Promise<BatchResult> {
    for (;;) {
      if (!holdsLease()) return 'lost';
      producer ??= await connectProducer();
      const active = producer;
      let inTransaction = false;
      const skipped = new Set(state.parked.map((p) => p.seq));
      events.emit('relay:batchSending', { shard, rows: rows.length - skipped.size, attempt });
      let outcomes;
      try {
        outcomes = await publishRows(
          async (messages) => {
            await active.begin();
            inTransaction = true;
            return active.produceBatch(messages);
          },
          rows,
          (row) => skipped.has(row.seq),
        );
      } catch (thrown) {
        // beginTransaction refused: the producer is in a state no retry of ours can mend.
        const error = classifyKafkaError(thrown);
        if (await failedAttempt(error, false, true)) return 'lost';
        throw error;
      }
      const settlement = settleBatch(rows, parkUnknownTopicsAfter(rows, outcomes, state.unknownTopic, settings.unknownTopicParkMs), state.parked);
      if (settlement.kind === 'commit') {
        // Past the local deadline another relay may already own the shard: commit nothing.
        if (!holdsLease()) {
          if (inTransaction) await active.abort(settings.leaseTtlMs).catch(() => replaceProducer());
          return 'lost';
        }
        const commitError = inTransaction ? await active.commit(settings.leaseTtlMs).then(() => undefined, classifyKafkaError) : undefined;
        // Latency to the commit, not the acks: read_committed consumers wait for it (and for the
        // transaction's markers the broker writes just after).
        const kafkaCommittedAt = Date.now();
        if (!commitError) {
          if (!(await advanceCursor(db, lease, settlement.cursor, settlement.parked))) {
            markLost('fenced');
            return 'lost';
          }
          cursor = settlement.cursor;
          reportCommitted(rows, settlement.parked, {
            ids: settlement.publishedIds,
            latencies: settlement.publishedCreatedAt.map((created) => (kafkaCommittedAt - created) / 1000),
            kafkaCommittedAt: inTransaction ? kafkaCommittedAt : undefined,
          });
          return settlement.partial ? 'partial' : 'committed';
        }
        if (await failedAttempt(commitError, inTransaction, false)) return 'lost';
        throw commitError;
      }
      state.parked = settlement.parked;
      if (await failedAttempt(settlement.error, inTransaction, settlement.replaceProducer)) return 'lost';
      if (settlement.isolate) return publishOneByOne(rows, state);
      if (settlement.backoff) throw settlement.error;
      // only rows that failed for good: send the rest again at once
    }
  }

  /** Publishes each row in a transaction of its own (rows in `parked` are parked with the first). */
  async function publishOneByOne(rows: OutboxRow[], state: BatchState): Promise<BatchResult> {
    for (const row of rows) {
      const already = state.parked.find((p) => p.seq === row.seq);
      const result = already ? await parkAlone(row, already) : await publishBatch([row], state.unknownTopic);
      if (result !== 'committed') return result;
    }
    return 'committed';
  }

  async function parkAlone(row: OutboxRow, parked: ParkedRow): Promise<BatchResult> {
    if (!holdsLease()) return 'lost';
    const to = { xid: row.xid, seq: row.seq };
    if (!(await advanceCursor(db, lease, to, [parked]))) {
      markLost('fenced');
      return 'lost';
    }
    cursor = to;
    reportCommitted([row], [parked], { ids: [], latencies: [], kafkaCommittedAt: undefined });
    return 'committed';
  }

  /** Aborts the open transaction after a failure; true when the lease is gone (fenced at Kafka). */
  async function failedAttempt(error: EvalboxError, inTransaction: boolean, replace: boolean): Promise<boolean> {
    events.emit('relay:produceError', { shard, code: error.code, retryable: error.retryable, message: error.message });
    if (isFencedKafkaError(error)) {
      // Another producer of this shard's transactional.id exists: another relay owns the shard.
      await replaceProducer();
      markLost('fenced');
      return true;
    }
    if (inTransaction && !replace && producer) {
      const abortError = await producer.abort(settings.leaseTtlMs).then(() => undefined, classifyKafkaError);
      // A producer that cannot abort is replaced; its successor's initTransactions aborts for it.
      if (abortError) replace = true;
    }
    if (replace) await replaceProducer();
    return false;
  }

  function reportCommitted(
    rows: OutboxRow[],
    parked: ParkedRow[],
    published: { ids: string[]; latencies: number[]; kafkaCommittedAt: number | undefined },
  ): void {
    for (const p of parked) {
      const row = rows.find((r) => r.seq === p.seq);
      const traceId = traceIdOf(row?.headers.traceparent);
      events.emit('relay:rowParked', {
        shard,
        seq: p.seq,
        id: row?.id ?? '',
        topic: row?.topic ?? '',
        code: p.errorCode,
        message: p.errorMessage,
        ...(traceId ? { traceId } : {}),
      });
    }
    events.emit('relay:batchPublished', {
      shard,
      rows: published.ids.length,
      parked: parked.length,
      publishLatencies: published.latencies,
      publishedIds: published.ids,
      kafkaCommittedAt: published.kafkaCommittedAt,
    });
  }

  async function run(): Promise<void> {
    let ahead: { nextXid: string } | undefined;
    try {
      ahead = await withRetry(() => cursorAheadOfDatabase(db, cursor), backoff, { retryable: () => true, signal: leaseGone.signal });
    } catch (error) {
      if (holdsLease() && !ctx.stopping.aborted) throw error;
      return; // the lease is gone or the relay stops
    }
    if (ahead) {
      // A restored backup or a cut-over cluster: reading on would skip every row below the cursor.
      events.emit('relay:error', {
        where: `shard ${shard} cursor`,
        error: new ConfigError(
          `shard ${shard}: the cursor (xid ${cursor.xid}) is above every transaction id of this database (next ${ahead.nextXid}); refusing to publish. After a restore or a cut-over, set the shard's cursor in relay_leases to where publishing must resume`,
        ),
      });
      markLost('cursor-ahead');
      return;
    }
    let idleMs = settings.pollMinMs;
    // The batch after the one in flight, read while it is being published (only after a full
    // batch, the sign that more rows wait); dropped unless the batch committed.
    let prefetched: Promise<OutboxRow[]> | undefined;
    const readNext = () => readBatchBelowHorizon(db, shard, cursor, settings.batchSize, settings.batchBytes);
    while (!ctx.stopping.aborted && holdsLease()) {
      nudge.pending = false;
      const next = prefetched;
      prefetched = undefined;
      // Database or broker trouble outside a batch's own outcomes: back off and read again from the cursor.
      let first = next;
      const rows = await withRetry(
        () => {
          const read = first ?? readNext();
          first = undefined;
          return read;
        },
        backoff,
        {
          retryable: () => true,
          signal: leaseGone.signal,
          onRetry: (error) => events.emit('relay:error', { where: `shard ${shard}`, error: coerceError(error) }),
        },
      ).catch(() => undefined);
      if (rows === undefined) break; // the lease is gone or the relay stops
      if (rows.length === 0) {
        await waitForWork(idleMs);
        // After a nudge, look again soon; while idle, back off to the poll ceiling.
        idleMs = nudge.pending ? settings.pollMinMs : Math.min(settings.pollMaxMs, idleMs * 2);
        continue;
      }
      idleMs = settings.pollMinMs;
      const last = rows[rows.length - 1] as OutboxRow;
      const publishing = publishBatch(rows);
      // A batch cut short by the row or byte bound is the sign that more rows wait.
      const readAhead =
        rows.length === settings.batchSize || batchBytes(rows) >= settings.batchBytes / 2
          ? readBatchBelowHorizon(db, shard, { xid: last.xid, seq: last.seq }, settings.batchSize, settings.batchBytes)
          : undefined;
      readAhead?.catch(() => {}); // a failure surfaces when it is awaited, if it is used at all
      const result = await publishing;
      if (result === 'lost' || result === 'stopped') break;
      // After a partial batch the rest is read again from the new cursor.
      if (result === 'committed') prefetched = readAhead;
    }
    if (lostReason === undefined && !ctx.stopping.aborted && !gaveUp) markLost('expired');
  }

  const worker: ShardWorker = {
    lease,
    cursor: () => cursor,
    holdsLease,
    renewed(sentAt) {
      deadline = Math.max(deadline, sentAt + settings.leaseTtlMs);
    },
    markLost,
    giveUp() {
      gaveUp = true;
      leaseGone.abort();
      wake();
    },
    lost: () => lostReason !== undefined,
    wake,
    done: Promise.resolve(),
  };
  worker.done = run()
    .catch((error) => {
      // A bug, not a passing condition (the retrier retries everything else): leave the shard, so
      // the heartbeat stops renewing a lease nobody works and another worker can take it.
      events.emit('relay:error', { where: `shard ${shard}`, error: coerceError(error) });
      markLost('failed');
    })
    .finally(() => replaceProducer());
  return worker;
}
