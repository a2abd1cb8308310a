// The chaos run's judge-payment invariant: every paid call beyond one per content is charged to a
// fault that the effect guarantees allow for, one extra per wasted answer, or it is unexplained.
import { describe, expect, it } from '@jest/globals';
import type { FakeJudgeRequestRecord } from '../../src/fake-judge/server.js';
import type { FaultMoment } from '../chaos/faults.js';
import { attributeJudgePayments, describeJudgePayments } from '../chaos/judge-payments.js';

let n = 0;
const answer = (
  contentHash: string,
  client: string,
  startedAt: number,
  endedAt: number,
  extra: Partial<FakeJudgeRequestRecord> = {},
): FakeJudgeRequestRecord => ({
  n: ++n,
  contentHash,
  rubricHash: 'relevance',
  outcome: 'ok',
  startedAt,
  endedAt,
  clientGone: false,
  client,
  ...extra,
});

const killScorer0: FaultMoment = { name: 'kill-scorer', target: 'scorer-0', startedAt: 10_000, exitedAt: 10_050, endedAt: 12_000 };
const sigtermScorer1: FaultMoment = { name: 'sigterm-scorer', target: 'scorer-1', startedAt: 20_000, exitedAt: 25_000, endedAt: 27_000 };
const killPostgres: FaultMoment = { name: 'kill-postgres', target: 'postgres', startedAt: 40_000, endedAt: 44_000 };
const timeline = [killScorer0, sigtermScorer1, killPostgres];

describe('judge payments attribution', () => {
  it('one paid answer per content is no extra', () => {
    const payments = attributeJudgePayments(
      [answer('a', 'scorer-0', 0, 10), answer('b', 'scorer-1', 0, 10), answer('b', 'scorer-1', 20, 30, { outcome: 'rate_limited' })],
      timeline,
    );
    expect(payments).toMatchObject({ paid: 2, distinct: 2, extra: 0, unexplained: [] });
    expect(describeJudgePayments(payments)).toBe('0 extra of 2 paid (2 contents); 0 unexplained');
  });

  it('a call in flight at the kill -9 of the scorer that sent it explains one extra', () => {
    const payments = attributeJudgePayments(
      [answer('a', 'scorer-0', 9_990, 10_020, { clientGone: true }), answer('a', 'scorer-1', 135_000, 135_020)],
      timeline,
    );
    expect(payments.unexplained).toEqual([]);
    expect(payments.causes.find((c) => c.cause === 'scorer kill -9')).toEqual({ cause: 'scorer kill -9', extra: 1, exposed: 1 });
  });

  it('a call answered to another scorer than the one killed, with no other fault near, is unexplained', () => {
    const payments = attributeJudgePayments([answer('a', 'scorer-1', 9_990, 10_020, { clientGone: true }), answer('a', 'scorer-1', 60_000, 60_020)], timeline);
    expect(payments.unexplained).toHaveLength(1);
    expect(describeJudgePayments(payments)).toMatch(/1 unexplained$/);
  });

  it('SIGTERM explains only a call whose scorer was gone before its answer', () => {
    const gone = attributeJudgePayments([answer('a', 'scorer-1', 19_000, 26_000, { clientGone: true }), answer('a', 'scorer-0', 60_000, 60_020)], timeline);
    expect(gone.unexplained).toEqual([]);
    const answered = attributeJudgePayments([answer('a', 'scorer-1', 19_000, 20_010), answer('a', 'scorer-0', 60_000, 60_020)], timeline);
    expect(answered.unexplained).toHaveLength(1);
  });

  it('a Postgres kill explains answers just before it or during the outage, not a verdict answered seconds earlier (its store is retried)', () => {
    const justBefore = attributeJudgePayments([answer('a', 'scorer-0', 39_500, 39_600), answer('a', 'scorer-0', 170_000, 170_020)], timeline);
    expect(justBefore.unexplained).toEqual([]);
    expect(justBefore.causes.find((c) => c.cause === 'Postgres kill')?.extra).toBe(1);
    const earlier = attributeJudgePayments([answer('a', 'scorer-0', 36_000, 37_500), answer('a', 'scorer-0', 165_000, 165_020)], timeline);
    expect(earlier.unexplained).toHaveLength(1);
  });

  it('one wasted answer explains one extra at most: a content paid three times around one kill has one unexplained', () => {
    const payments = attributeJudgePayments(
      [answer('a', 'scorer-0', 9_990, 10_020, { clientGone: true }), answer('a', 'scorer-1', 135_000, 135_020), answer('a', 'scorer-1', 150_000, 150_020)],
      timeline,
    );
    expect(payments).toMatchObject({ paid: 3, distinct: 1, extra: 2 });
    expect(payments.unexplained).toEqual([expect.objectContaining({ contentHash: 'a', extra: 1 })]);
    expect(describeJudgePayments(payments)).toBe(
      '2 extra of 3 paid (1 contents): 1 at scorer kill -9 (of 1 answers in flight or unstored then); 1 unexplained',
    );
  });
});
