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
import { coerceError, type EvalboxError } from '../src/errors.js';
import { classifyKafkaError, isFencedKafkaError, type TransactionalProducer } from '../src/kafka.js';
import { fullJitterDelay, sleep } from '../src/retry.js';
import { publishLinks, publishRows } from './publisher.js';
import { inSpan, ROOT, SpanKind, traceIdOf } from '../src/tracing.js';
import type { RelayEvents, RelaySettings } from './relay.js';
import { settleBatch } from './settle.js';
import { advanceCursor, readBatchBelowHorizon, type Cursor, type Lease, type OutboxRow, type ParkedRow } from './sql.js';

export interface ShardWorkerContext {
  db: Db;
  settings: RelaySettings;
  events: EventEmitter<RelayEvents>;
  /** A new transactional producer for the shard (its transactional.id derived from the shard). */
  createProducer: (shard: number) => TransactionalProducer;
  /** Aborted when the relay stops: the worker finishes (or gives up) its batch and returns. */
  stopping: AbortSignal;
}

export type LeaseLossReason = 'renew-failed' | 'renew-error' | 'fenced' | 'expired';

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

  const holdsLease = () => lostReason === undefined && !gaveUp && performance.now() < deadline - safetyMs;
  const markLost = (reason: LeaseLossReason) => {
    if (lostReason !== undefined) return;
    lostReason = reason;
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

  /** Sends `rows` as one transaction until it commits, the lease is lost, or the relay stops. */
  function publishBatch(rows: OutboxRow[]): Promise<BatchResult> {
    // One span per batch, linked to the trace of every row it carries (each row's Kafka record
    // carries that row's own traceparent header, from the stored headers).
    const links = publishLinks(rows);
    return inSpan('outbox publish', { kind: SpanKind.PRODUCER, links, parent: ROOT }, async (span) => {
      const result = await publishBatchAttempts(rows);
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

  async function publishBatchAttempts(rows: OutboxRow[]): Promise<BatchResult> {
    let parked: ParkedRow[] = [];
    let attempt = 0;
    for (;;) {
      if (!holdsLease()) return 'lost';
      producer ??= await connectProducer();
      const active = producer;
      let inTransaction = false;
      const skipped = new Set(parked.map((p) => p.seq));
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
      const settlement = settleBatch(rows, outcomes, parked);
      if (settlement.kind === 'commit') {
        // Past the local deadline another relay may already own the shard: commit nothing.
        if (!holdsLease()) {
          if (inTransaction) await active.abort(settings.leaseTtlMs).catch(() => replaceProducer());
          return 'lost';
        }
        const commitError = inTransaction ? await active.commit(settings.leaseTtlMs).then(() => undefined, classifyKafkaError) : undefined;
        if (!commitError) {
          if (!(await advanceCursor(db, lease, settlement.cursor, settlement.parked))) {
            markLost('fenced');
            return 'lost';
          }
          cursor = settlement.cursor;
          reportCommitted(rows, settlement.parked, settlement.published, settlement.publishLatencies);
          return settlement.partial ? 'partial' : 'committed';
        }
        if (await failedAttempt(commitError, inTransaction, false)) return 'lost';
        attempt++;
      } else {
        parked = settlement.parked;
        if (await failedAttempt(settlement.error, inTransaction, settlement.replaceProducer)) return 'lost';
        if (settlement.isolate) return publishOneByOne(rows, parked);
        if (settlement.backoff) attempt++;
        else continue; // only rows that failed for good: send the rest again at once
      }
      if (ctx.stopping.aborted) return 'stopped';
      const delayMs = fullJitterDelay({ baseMs: 100, maxMs: 5_000 }, attempt);
      events.emit('relay:batchRetry', { shard, attempt, delayMs, code: settlement.kind === 'redo' ? settlement.error.code : 'COMMIT_FAILED' });
      await sleep(Math.min(delayMs, Math.max(0, deadline - performance.now())), ctx.stopping);
    }
  }

  /** Publishes each row in a transaction of its own (rows in `parked` are parked with the first). */
  async function publishOneByOne(rows: OutboxRow[], parked: ParkedRow[]): Promise<BatchResult> {
    for (const row of rows) {
      const already = parked.find((p) => p.seq === row.seq);
      const result = already ? await parkAlone(row, already) : await publishBatch([row]);
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
    reportCommitted([row], [parked], 0, []);
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

  function reportCommitted(rows: OutboxRow[], parked: ParkedRow[], published: number, latencies: number[]): void {
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
    events.emit('relay:batchPublished', { shard, rows: published, parked: parked.length, publishLatencies: latencies });
  }

  async function run(): Promise<void> {
    let idleMs = settings.pollMinMs;
    let attempt = 0;
    // The batch after the one in flight, read while it is being published (only after a full
    // batch, the sign that more rows wait); dropped unless the batch committed.
    let prefetched: Promise<OutboxRow[]> | undefined;
    while (!ctx.stopping.aborted && holdsLease()) {
      nudge.pending = false;
      try {
        const next = prefetched;
        prefetched = undefined;
        const rows = await (next ?? readBatchBelowHorizon(db, shard, cursor, settings.batchSize));
        if (rows.length === 0) {
          await waitForWork(idleMs);
          // After a nudge, look again soon; while idle, back off to the poll ceiling.
          idleMs = nudge.pending ? settings.pollMinMs : Math.min(settings.pollMaxMs, idleMs * 2);
          continue;
        }
        idleMs = settings.pollMinMs;
        const last = rows[rows.length - 1] as OutboxRow;
        const publishing = publishBatch(rows);
        const readAhead =
          rows.length === settings.batchSize ? readBatchBelowHorizon(db, shard, { xid: last.xid, seq: last.seq }, settings.batchSize) : undefined;
        readAhead?.catch(() => {}); // a failure surfaces when it is awaited, if it is used at all
        const result = await publishing;
        if (result === 'lost' || result === 'stopped') break;
        attempt = 0;
        // After a partial batch the rest is read again from the new cursor.
        if (result === 'committed') prefetched = readAhead;
      } catch (error) {
        // Database or broker trouble outside a batch's own outcomes: back off and read again from the cursor.
        attempt++;
        events.emit('relay:error', { where: `shard ${shard}`, error: coerceError(error) });
        await sleep(fullJitterDelay({ baseMs: 200, maxMs: 5_000 }, attempt), ctx.stopping);
      }
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
      wake();
    },
    lost: () => lostReason !== undefined,
    wake,
    done: Promise.resolve(),
  };
  worker.done = run()
    .catch((error) => {
      events.emit('relay:error', { where: `shard ${shard}`, error: coerceError(error) });
    })
    .finally(() => replaceProducer());
  return worker;
}
