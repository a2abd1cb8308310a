// What to do with a batch once every row has an outcome: a pure function, so the rules are tested
// without a broker. A batch is one Kafka transaction: it commits only if every row that was sent
// was acknowledged; any failed send aborts it whole (read_committed consumers never see it), and
// the batch is redone from the same cursor, so no key can be repeated or reordered by a redo.
import { PermanentError, type EvalboxError, type PermanentCode } from '../src/errors.js';
import { isFatalKafkaError } from '../src/kafka.js';
import type { RowOutcome } from './publisher.js';
import type { Cursor, OutboxRow, ParkedRow } from './sql.js';

export type BatchSettlement =
  /**
   * Commit the transaction, then move the cursor to `cursor` and park `parked`, in one database
   * transaction. `partial` when only a prefix of the rows was produced (librdkafka refused the
   * rest at enqueue, so they never left the process): the rest is read again from the new cursor.
   */
  | { kind: 'commit'; cursor: Cursor; parked: ParkedRow[]; publishedCreatedAt: number[]; publishedIds: string[]; partial: boolean }
  /**
   * Abort the transaction and send the batch again, without the rows in `parked` (they failed for
   * good and are parked when the batch finally commits). `backoff` when an infrastructure fault
   * caused it; `replaceProducer` when the producer instance is unusable.
   */
  | { kind: 'redo'; parked: ParkedRow[]; backoff: boolean; replaceProducer: boolean; error: EvalboxError; isolate?: boolean };

/**
 * `outcomes[i]` belongs to `rows[i]`; undefined means the row was already parked in an earlier
 * attempt of the same batch. `alreadyParked` are those rows' records.
 */
export function settleBatch(rows: OutboxRow[], outcomes: (RowOutcome | undefined)[], alreadyParked: ParkedRow[] = []): BatchSettlement {
  const parked: ParkedRow[] = [];
  // Each published row's id and when it was written (ms): its latency is taken once the batch is visible.
  const createdAt: number[] = [];
  const ids: string[] = [];
  let sendFailed: EvalboxError | undefined;
  let retryable: EvalboxError | undefined;
  let fatal = false;
  // The first row librdkafka refused at enqueue with a retryable error: it and every row after it
  // were never produced, so a transaction over the rows before it can commit.
  const refusedAt = outcomes.findIndex((o) => o !== undefined && !o.ok && !o.sent && o.error.retryable);
  const considered = refusedAt === -1 ? rows : rows.slice(0, refusedAt);
  considered.forEach((row, i) => {
    const outcome = outcomes[i];
    if (!outcome) return;
    if (outcome.ok) {
      createdAt.push(row.created_at.getTime());
      ids.push(row.id);
      return;
    }
    const { error } = outcome;
    if (outcome.sent) sendFailed ??= error;
    if (isFatalKafkaError(error)) fatal = true;
    if (error.retryable) retryable ??= error;
    else parked.push({ seq: row.seq, xid: row.xid, errorCode: error.code, errorMessage: error.message });
  });
  // The broker refuses a whole request (e.g. too large for the topic's max.message.bytes), so a
  // refusal among several rows sent together does not say which row is at fault: send them one
  // per transaction, where a refusal names its row.
  const sentCount = considered.filter((_, i) => outcomes[i]?.ok || (outcomes[i] as { sent?: boolean } | undefined)?.sent).length;
  const refusedWhenSent = considered.some((_, i) => {
    const outcome = outcomes[i];
    return outcome !== undefined && !outcome.ok && outcome.sent && !outcome.error.retryable;
  });
  if (!retryable && refusedWhenSent && sentCount > 1) {
    const notSent = parked.filter((p) =>
      considered.some((row, i) => row.seq === p.seq && outcomes[i] !== undefined && !(outcomes[i] as { sent?: boolean }).sent),
    );
    return { kind: 'redo', parked: [...alreadyParked, ...notSent], backoff: false, replaceProducer: fatal, error: sendFailed as EvalboxError, isolate: true };
  }
  const last = considered[considered.length - 1];
  if (!sendFailed && !retryable && last) {
    const parkedBefore = alreadyParked.filter((p) => considered.some((row) => row.seq === p.seq));
    return {
      kind: 'commit',
      cursor: { xid: last.xid, seq: last.seq },
      parked: [...parkedBefore, ...parked],
      publishedCreatedAt: createdAt,
      publishedIds: ids,
      partial: considered.length < rows.length,
    };
  }
  if (!sendFailed && !retryable && refusedAt !== -1) {
    const refused = outcomes[refusedAt] as { error: EvalboxError };
    return { kind: 'redo', parked: [...alreadyParked], backoff: true, replaceProducer: false, error: refused.error };
  }
  return {
    kind: 'redo',
    parked: [...alreadyParked, ...parked],
    backoff: retryable !== undefined,
    replaceProducer: fatal,
    error: (retryable ?? sendFailed) as EvalboxError,
  };
}

/** Since when (Date.now()) the batch's sends have found a topic the broker does not know. */
export interface UnknownTopicClock {
  since: number | undefined;
}

const UNKNOWN_TOPIC_CODES = new Set(['ERR__UNKNOWN_TOPIC', 'ERR_UNKNOWN_TOPIC_OR_PART']);

/**
 * A topic the broker does not know may be about to be created, so its rows are retried, but not
 * forever: once they have failed for `parkAfterMs`, their failures count as permanent, and the
 * rows are parked (redrivable) instead of holding back every other row of the shard.
 */
export function parkUnknownTopicsAfter(
  rows: OutboxRow[],
  outcomes: (RowOutcome | undefined)[],
  clock: UnknownTopicClock,
  parkAfterMs: number,
  now: number = Date.now(),
): (RowOutcome | undefined)[] {
  const unknown = (o: RowOutcome | undefined): o is Extract<RowOutcome, { ok: false }> => o !== undefined && !o.ok && UNKNOWN_TOPIC_CODES.has(o.error.code);
  // A refusal at enqueue is copied to every row after it, whatever their topic: only the row that
  // met it first (and rows that were sent) name a topic that is really unknown.
  const seen = new Set<EvalboxError>();
  const missing = new Set<string>();
  outcomes.forEach((o, i) => {
    if (!unknown(o)) return;
    if (o.sent || !seen.has(o.error)) missing.add((rows[i] as OutboxRow).topic);
    seen.add(o.error);
  });
  if (missing.size === 0) return outcomes;
  clock.since ??= now;
  if (now - clock.since < parkAfterMs) return outcomes;
  const seconds = Math.round((now - clock.since) / 1000);
  return outcomes.map((o, i) =>
    unknown(o) && missing.has((rows[i] as OutboxRow).topic)
      ? { ok: false, sent: o.sent, error: new PermanentError(`${o.error.message} (for ${seconds} s)`, { code: o.error.code as PermanentCode, cause: o.error }) }
      : o,
  );
}
