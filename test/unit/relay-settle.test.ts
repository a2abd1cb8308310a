// settleBatch, the rules that decide a batch's fate from its rows' outcomes, without a broker.
import { describe, expect, it } from '@jest/globals';
import { PermanentError, RetryableError } from '../../src/errors.js';
import { classifyKafkaError, kafkaCodes } from '../../src/kafka.js';
import type { RowOutcome } from '../../outbox-relay/publisher.js';
import { parkUnknownTopicsAfter, settleBatch } from '../../outbox-relay/settle.js';
import type { OutboxRow } from '../../outbox-relay/sql.js';

const created = new Date('2026-01-01T00:00:00Z');
const rows: OutboxRow[] = [1, 2, 3, 4, 5].map((n) => ({
  id: `id-${n}`,
  seq: String(n),
  xid: '100',
  topic: 't',
  key: n % 2 ? 'a' : 'b',
  type: 'test',
  source: '/test',
  headers: {},
  payload: '{}',
  created_at: created,
}));
const acked: RowOutcome = { ok: true };
const timedOut: RowOutcome = { ok: false, sent: true, error: new RetryableError('timed out', { code: 'ERR__MSG_TIMED_OUT' }) };
const tooLarge: RowOutcome = { ok: false, sent: true, error: new PermanentError('too large', { code: 'ERR_MSG_SIZE_TOO_LARGE' }) };
const illegal: RowOutcome = { ok: false, sent: false, error: new PermanentError('illegal topic', { code: 'INVALID_TOPIC' }) };
const queueFull: RowOutcome = { ok: false, sent: false, error: new RetryableError('queue full', { code: 'ERR__QUEUE_FULL' }) };
const fatal: RowOutcome = {
  ok: false,
  sent: true,
  error: new RetryableError('fatal', { code: 'ERR__FATAL', cause: Object.assign(new Error('fatal'), { code: kafkaCodes.ERR__FATAL }) }),
};

describe('settleBatch', () => {
  it('commits a batch whose every row was acknowledged, up to its last row', () => {
    expect(settleBatch(rows, [acked, acked, acked, acked, acked])).toEqual({
      kind: 'commit',
      cursor: { xid: '100', seq: '5' },
      parked: [],
      publishedCreatedAt: Array.from({ length: 5 }, () => created.getTime()),
      publishedIds: ['id-1', 'id-2', 'id-3', 'id-4', 'id-5'],
      partial: false,
    });
  });

  it('finding 1: a failure in the middle of a batch redoes the whole batch, whatever got through after it', () => {
    const settled = settleBatch(rows, [acked, timedOut, timedOut, acked, acked]);
    expect(settled).toMatchObject({ kind: 'redo', backoff: true, replaceProducer: false, parked: [] });
  });

  it('a row refused by the broker for good when sent alone is parked; a redo of the rest leaves it out', () => {
    const alone = settleBatch(rows.slice(1, 2), [tooLarge]);
    expect(alone).toMatchObject({ kind: 'redo', backoff: false, parked: [{ seq: '2', errorCode: 'ERR_MSG_SIZE_TOO_LARGE' }] });
    const parked = alone.parked;
    expect(settleBatch(rows.slice(1, 2), [undefined], parked)).toMatchObject({ kind: 'commit', cursor: { seq: '2' }, parked, publishedIds: [] });
    expect(settleBatch(rows, [acked, undefined, acked, acked, acked], parked)).toMatchObject({
      kind: 'commit',
      cursor: { seq: '5' },
      parked,
      publishedIds: ['id-1', 'id-3', 'id-4', 'id-5'],
    });
  });

  it('a row refused before sending (illegal topic) is parked in the same commit, without aborting', () => {
    expect(settleBatch(rows, [acked, illegal, acked, acked, acked])).toMatchObject({
      kind: 'commit',
      parked: [{ seq: '2', errorCode: 'INVALID_TOPIC' }],
      publishedIds: ['id-1', 'id-3', 'id-4', 'id-5'],
    });
  });

  it('a full local queue commits the prefix that was produced; the rest was never sent and is read again', () => {
    expect(settleBatch(rows, [acked, acked, queueFull, queueFull, queueFull])).toMatchObject({
      kind: 'commit',
      cursor: { seq: '2' },
      partial: true,
      publishedIds: ['id-1', 'id-2'],
    });
    expect(settleBatch(rows, [queueFull, queueFull, queueFull, queueFull, queueFull])).toMatchObject({ kind: 'redo', backoff: true });
  });

  it('finding 3: a delivery report with ERR__FATAL (a bare code) replaces the producer', () => {
    expect(settleBatch(rows, [acked, fatal, acked, acked, acked])).toMatchObject({ kind: 'redo', replaceProducer: true });
  });
});

describe('producer error classes', () => {
  it('finding 3: a delivery report that carries only the code ERR__FATAL is recognised as fatal', async () => {
    const { classifyKafkaError, isFatalKafkaError } = await import('../../src/kafka.js');
    // Delivery reports come as a bare code and message, without librdkafka's isFatal flag.
    const report = Object.assign(new Error('Local: Fatal error'), { code: kafkaCodes.ERR__FATAL });
    expect(isFatalKafkaError(classifyKafkaError(report))).toBe(true);
    const timedOut = Object.assign(new Error('Local: Message timed out'), { code: kafkaCodes.ERR__MSG_TIMED_OUT });
    expect(isFatalKafkaError(classifyKafkaError(timedOut))).toBe(false);
  });

  it('an error classified once keeps its class when classified again (the transactional calls reject classified, the shard worker classifies what they throw)', async () => {
    const { classifyKafkaError, isFatalKafkaError, isFencedKafkaError } = await import('../../src/kafka.js');
    const fenced = classifyKafkaError(Object.assign(new Error('Local: This instance has been fenced'), { code: kafkaCodes.ERR__FENCED }));
    expect(isFencedKafkaError(classifyKafkaError(fenced))).toBe(true);
    const fatal = classifyKafkaError(Object.assign(new Error('Local: Fatal error'), { code: kafkaCodes.ERR__FATAL }));
    expect(isFatalKafkaError(classifyKafkaError(fatal))).toBe(true);
    const tooLarge = classifyKafkaError(Object.assign(new Error('too large'), { code: kafkaCodes.ERR_MSG_SIZE_TOO_LARGE }));
    expect(classifyKafkaError(tooLarge)).toBe(tooLarge);
  });
});

describe('settleBatch: refusals that do not name their row', () => {
  it('a broker refusal among several rows sent together is retried one row per transaction, parking nobody yet', () => {
    const settled = settleBatch(rows, [acked, tooLarge, tooLarge, acked, acked]);
    expect(settled).toMatchObject({ kind: 'redo', isolate: true, parked: [] });
  });
  it('the same refusal of a row sent alone parks that row', () => {
    expect(settleBatch(rows.slice(1, 2), [tooLarge])).toMatchObject({ kind: 'redo', parked: [{ seq: '2' }] });
  });

  it.each(['ERR_TOPIC_AUTHORIZATION_FAILED', 'ERR_RECORD_LIST_TOO_LARGE'])(
    'finding 7: %s is per row: a batch that met it is sent again one row per transaction, and only the refused row is parked',
    (name) => {
      const refused = classifyKafkaError(Object.assign(new Error(name), { code: kafkaCodes[name] }));
      const outcome: RowOutcome = { ok: false, sent: true, error: refused };
      expect(refused.retryable).toBe(false);
      expect(settleBatch(rows, [acked, outcome, acked, acked, acked])).toMatchObject({ kind: 'redo', isolate: true });
      // Alone in its transaction, the refusal names its row: it is left out, and parked when the
      // (now empty) transaction commits.
      const alone = settleBatch([rows[1] as OutboxRow], [outcome]);
      expect(alone).toMatchObject({ kind: 'redo', backoff: false, parked: [{ seq: '2', errorCode: name }] });
      expect(settleBatch([rows[1] as OutboxRow], [undefined], alone.parked)).toMatchObject({ kind: 'commit', parked: [{ seq: '2', errorCode: name }] });
    },
  );

  it('finding 7: an unknown topic is retried until the bound, then its rows (only) count as permanent', () => {
    const unknown = new RetryableError('Local: Unknown topic', { code: 'ERR__UNKNOWN_TOPIC' });
    const mixed = rows.map((row, i) => ({ ...row, topic: i === 1 ? 'missing' : 't' }));
    // Refused at enqueue: the refusal is copied to the rows after it, whatever their topic.
    const outcomes: RowOutcome[] = [acked, ...[1, 2, 3, 4].map(() => ({ ok: false as const, sent: false, error: unknown }))];
    const clock = { since: undefined };
    expect(parkUnknownTopicsAfter(mixed, outcomes, clock, 1_000, 10_000)).toBe(outcomes);
    expect(parkUnknownTopicsAfter(mixed, outcomes, clock, 1_000, 10_500)).toBe(outcomes);
    const after = parkUnknownTopicsAfter(mixed, outcomes, clock, 1_000, 11_000);
    expect(after.map((o) => o && !o.ok && o.error.retryable)).toEqual([undefined, false, true, true, true].map((v) => (v === undefined ? false : v)));
    expect(settleBatch(mixed, after)).toMatchObject({ kind: 'commit', cursor: { seq: '2' }, parked: [{ seq: '2' }], partial: true });
  });
});
