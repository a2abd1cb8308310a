// Why a content was paid for more than once. The fake judge logs every request (content, outcome,
// which scorer sent it, whether that scorer was still connected when it was answered); the chaos
// run records when each fault hit. Every paid answer after a content's first is an extra, and is
// charged to one earlier answer of that content whose verdict never reached the cache. Each such
// wasted answer must be explained by a fault the documented guarantee allows for (docs/consumers.md,
// "Effect guarantees, exactly"): it was in flight at the kill -9 of the scorer that sent it (or
// answered to it just before, with its store not yet done), in flight when that scorer was stopped
// with SIGTERM and gone before its answer, or answered just before or during a Postgres kill
// (relaxed cache commits lost with the crash, or a claim lost so that another replica claimed). One wasted answer explains at most one extra; anything else is
// unexplained, and the invariant fails.
import type { FakeJudgeRequestRecord } from '../../src/fake-judge/server.js';
import type { FaultMoment } from './faults.js';

/** How long after its answer a verdict may still be on its way into the cache (a pool wait under load). */
export const STORE_LAG_MS = 5000;
/**
 * How far before a Postgres crash a paid answer's cache row can still be lost: cache writes commit
 * asynchronously, and the WAL writer writes an asynchronous commit within 3 × wal_writer_delay
 * (600 ms by default); before that, the store waits for a pool connection, which under the chaos
 * run's load took over a second (an answer 1.03 s before the kill was paid again). A verdict
 * whose store failed during the outage is retried, not lost, so answers further back are not
 * exposed.
 */
export const POSTGRES_LOSS_MS = 2000;

export type PaymentCause = 'scorer kill -9' | 'scorer SIGTERM' | 'Postgres kill';

export interface JudgePayments {
  /** Answers the fake judge gave (outcome ok): what a provider bills. */
  paid: number;
  /** Distinct contents among them. */
  distinct: number;
  /** paid − distinct. */
  extra: number;
  /** Extras per cause, and how many paid answers that kind of fault could have wasted (the bound). */
  causes: { cause: PaymentCause; extra: number; exposed: number }[];
  /** Extras no fault explains (a double payment the guarantee does not allow), per content. */
  unexplained: { contentHash: string; extra: number; answers: Pick<FakeJudgeRequestRecord, 'n' | 'client' | 'startedAt' | 'endedAt' | 'clientGone'>[] }[];
}

interface Kill {
  cause: PaymentCause;
  target: string;
  hitAt: number;
  /** When the process it hit was gone (the restart comes after). */
  goneAt: number;
}

function killsOf(timeline: FaultMoment[]): { kills: Kill[]; postgres: FaultMoment[] } {
  const kills: Kill[] = [];
  for (const moment of timeline) {
    if (!moment.target) continue;
    if (moment.name === 'kill-scorer')
      kills.push({ cause: 'scorer kill -9', target: moment.target, hitAt: moment.startedAt, goneAt: moment.exitedAt ?? moment.startedAt });
    if (moment.name === 'sigterm-scorer')
      kills.push({ cause: 'scorer SIGTERM', target: moment.target, hitAt: moment.startedAt, goneAt: moment.exitedAt ?? moment.endedAt });
  }
  return { kills, postgres: timeline.filter((m) => m.name === 'kill-postgres') };
}

/** Whether `kill` explains why `answer`'s verdict never reached the cache. */
function killWasted(answer: FakeJudgeRequestRecord, kill: Kill): boolean {
  if (answer.client !== kill.target || answer.startedAt > kill.goneAt) return false;
  // Killed with the request in flight (the provider answered a process that was gone), or just
  // after the answer, before its verdict was stored.
  if (kill.cause === 'scorer kill -9') return answer.clientGone || answer.endedAt >= kill.hitAt - STORE_LAG_MS;
  // Stopped with the request in flight, and gone before its answer.
  return answer.clientGone && answer.endedAt >= kill.hitAt;
}

/** Cache rows are committed with relaxed durability: a crash loses the last fraction of a second of them. */
function postgresWasted(answer: FakeJudgeRequestRecord, moment: FaultMoment): boolean {
  return answer.endedAt >= moment.startedAt - POSTGRES_LOSS_MS && answer.startedAt <= moment.endedAt;
}

/** Attributes every extra paid call in `requests` to a fault of `timeline`, or to none. */
export function attributeJudgePayments(requests: FakeJudgeRequestRecord[], timeline: FaultMoment[]): JudgePayments {
  const { kills, postgres } = killsOf(timeline);
  const causeOf = (answer: FakeJudgeRequestRecord): PaymentCause | undefined =>
    kills.find((kill) => killWasted(answer, kill))?.cause ?? (postgres.some((m) => postgresWasted(answer, m)) ? 'Postgres kill' : undefined);
  const paidAnswers = requests.filter((r) => r.outcome === 'ok');
  const answersByContent = new Map<string, FakeJudgeRequestRecord[]>();
  for (const answer of paidAnswers) {
    const answers = answersByContent.get(answer.contentHash) ?? [];
    answers.push(answer);
    answersByContent.set(answer.contentHash, answers);
  }
  const extraBy = new Map<PaymentCause, number>();
  const unexplained: JudgePayments['unexplained'] = [];
  for (const [contentHash, answers] of answersByContent) {
    answers.sort((a, b) => a.endedAt - b.endedAt);
    // Every answer but the last was wasted: its verdict did not spare the next call.
    let notExplained = 0;
    for (const answer of answers.slice(0, -1)) {
      const cause = causeOf(answer);
      if (cause === undefined) notExplained++;
      else extraBy.set(cause, (extraBy.get(cause) ?? 0) + 1);
    }
    if (notExplained > 0)
      unexplained.push({
        contentHash,
        extra: notExplained,
        answers: answers.map(({ n, client, startedAt, endedAt, clientGone }) => ({ n, client, startedAt, endedAt, clientGone })),
      });
  }
  // The bound, measured on the judge's own log: the paid answers each kind of fault could have
  // wasted (in flight at it, or answered just before it). One wasted answer is one extra at most.
  const exposedTo = (wasted: (answer: FakeJudgeRequestRecord) => boolean) => paidAnswers.filter(wasted).length;
  const causes: JudgePayments['causes'] = [
    {
      cause: 'scorer kill -9',
      extra: extraBy.get('scorer kill -9') ?? 0,
      exposed: exposedTo((a) => kills.some((k) => k.cause === 'scorer kill -9' && killWasted(a, k))),
    },
    {
      cause: 'scorer SIGTERM',
      extra: extraBy.get('scorer SIGTERM') ?? 0,
      exposed: exposedTo((a) => kills.some((k) => k.cause === 'scorer SIGTERM' && killWasted(a, k))),
    },
    { cause: 'Postgres kill', extra: extraBy.get('Postgres kill') ?? 0, exposed: exposedTo((a) => postgres.some((m) => postgresWasted(a, m))) },
  ];
  return { paid: paidAnswers.length, distinct: answersByContent.size, extra: paidAnswers.length - answersByContent.size, causes, unexplained };
}

/** The invariant's figure: extras per cause, each against the paid answers that fault could have wasted. */
export function describeJudgePayments(payments: JudgePayments): string {
  const causes = payments.causes
    .filter((c) => c.extra > 0 || c.exposed > 0)
    .map((c) => `${c.extra} at ${c.cause} (of ${c.exposed} answers in flight or unstored then)`)
    .join(', ');
  const unexplained = payments.unexplained.reduce((sum, u) => sum + u.extra, 0);
  return `${payments.extra} extra of ${payments.paid} paid (${payments.distinct} contents)${causes ? `: ${causes}` : ''}; ${unexplained} unexplained`;
}
