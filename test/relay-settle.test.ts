// settleBatch, the rules that decide a batch's fate from its rows' outcomes, without a broker.
import { describe, expect, it } from '@jest/globals';
import { PermanentError, RetryableError } from '../src/errors.js';
import { kafkaCodes } from '../src/kafka.js';
import type { RowOutcome } from '../outbox-relay/publisher.js';
import { settleBatch } from '../outbox-relay/settle.js';
import type { OutboxRow } from '../outbox-relay/sql.js';

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
const acked: RowOutcome = { ok: true, ackedAt: created.getTime() + 5 };
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
      published: 5,
      publishLatencies: [0.005, 0.005, 0.005, 0.005, 0.005],
      partial: false,
    });
  });

  it('finding 1: a failure in the middle of a batch redoes the whole batch, whatever got through after it', () => {
    const settled = settleBatch(rows, [acked, timedOut, timedOut, acked, acked]);
    expect(settled).toMatchObject({ kind: 'redo', backoff: true, replaceProducer: false, parked: [] });
  });

  it('a row refused by the broker for good is parked, and the batch is sent again without it at once', () => {
    const first = settleBatch(rows, [acked, tooLarge, acked, acked, acked]);
    expect(first).toMatchObject({ kind: 'redo', backoff: false, parked: [{ seq: '2', errorCode: 'ERR_MSG_SIZE_TOO_LARGE' }] });
    const parked = first.parked;
    expect(settleBatch(rows, [acked, undefined, acked, acked, acked], parked)).toMatchObject({ kind: 'commit', cursor: { seq: '5' }, parked, published: 4 });
  });

  it('a row refused before sending (illegal topic) is parked in the same commit, without aborting', () => {
    expect(settleBatch(rows, [acked, illegal, acked, acked, acked])).toMatchObject({ kind: 'commit', parked: [{ seq: '2', errorCode: 'INVALID_TOPIC' }] });
  });

  it('a full local queue commits the prefix that was produced; the rest was never sent and is read again', () => {
    expect(settleBatch(rows, [acked, acked, queueFull, queueFull, queueFull])).toMatchObject({
      kind: 'commit',
      cursor: { seq: '2' },
      partial: true,
      published: 2,
    });
    expect(settleBatch(rows, [queueFull, queueFull, queueFull, queueFull, queueFull])).toMatchObject({ kind: 'redo', backoff: true });
  });

  it('finding 3: a delivery report with ERR__FATAL (a bare code) replaces the producer', () => {
    expect(settleBatch(rows, [acked, fatal, acked, acked, acked])).toMatchObject({ kind: 'redo', replaceProducer: true });
  });
});

describe('producer error classes', () => {
  it('finding 3: a delivery report that carries only the code ERR__FATAL is recognised as fatal', async () => {
    const { classifyKafkaError, isFatalKafkaError } = await import('../src/kafka.js');
    // Delivery reports come as a bare code and message, without librdkafka's isFatal flag.
    const report = Object.assign(new Error('Local: Fatal error'), { code: kafkaCodes.ERR__FATAL });
    expect(isFatalKafkaError(classifyKafkaError(report))).toBe(true);
    const timedOut = Object.assign(new Error('Local: Message timed out'), { code: kafkaCodes.ERR__MSG_TIMED_OUT });
    expect(isFatalKafkaError(classifyKafkaError(timedOut))).toBe(false);
  });
});
