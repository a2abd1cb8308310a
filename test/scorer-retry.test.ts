// The retry budget of a dimension: what counts against it, and what never ends the work.
import { describe, expect, it } from '@jest/globals';
import { readDeadLetters } from '../src/dlt.js';
import { EvalboxError, RetryableError } from '../src/errors.js';
import type { Scorer } from '../consumers/scorer.js';
import { kafkaBrokers, waitFor } from './helpers.js';
import { createEvaluation, createTopics, produceEvent, scorerSuite, startScorer, completedScoreRow } from './scorer-helpers.js';

const isRateLimit = (error: unknown) => error instanceof EvalboxError && error.code === 'JUDGE_RATE_LIMITED';

describe('retry budget', () => {
  const suite = scorerSuite();
  const statusOf = async (id: string) =>
    (await suite.database.db.selectFrom('evaluations').select('status').where('id', '=', id).executeTakeFirstOrThrow()).status;

  it('time paused for the provider does not count against the retry budget: after an outage longer than the retry age, one ordinary failure is retried, not exhausted', async () => {
    const topics = await createTopics();
    let outageUntil = 0;
    let ordinaryFailures = 0;
    const scorer: Scorer = {
      dimension: 'toxicity',
      name: 'test-toxicity',
      version: '1',
      async score() {
        if (outageUntil === 0) outageUntil = Date.now() + 1_500;
        if (Date.now() < outageUntil) throw new RetryableError('429', { code: 'JUDGE_RATE_LIMITED', retryAfterMs: 100 });
        if (ordinaryFailures++ === 0) throw new RetryableError('503', { code: 'JUDGE_SERVER_ERROR' });
        return completedScoreRow('toxicity');
      },
    };
    // A retry age (500 ms) shorter than the provider's outage (1.5 s).
    suite.harness = await startScorer(suite.database, topics, {
      producer: suite.producer,
      maxAgeMs: 500,
      maxAttempts: 5,
      isPressure: isRateLimit,
      scorers: new Map([['toxicity', scorer]]),
    });
    const data = await createEvaluation(suite.database, ['toxicity']);
    await produceEvent(suite.producer, topics.events, data);
    await waitFor(async () => (await statusOf(data.evaluationId)) !== 'PENDING', { what: 'terminal', timeoutMs: 20_000 });
    expect(await statusOf(data.evaluationId)).toBe('SCORED');
    expect(ordinaryFailures).toBe(2);
  });

  it('a shutdown abort is never terminal: SIGTERM during the last attempt leaves the evaluation PENDING for redelivery, with no ERROR row and no DLT record', async () => {
    const topics = await createTopics();
    let attempts = 0;
    const scorer: Scorer = {
      dimension: 'toxicity',
      name: 'test-toxicity',
      version: '1',
      async score(_inputs, { signal }) {
        attempts++;
        if (attempts === 1) throw new RetryableError('503', { code: 'JUDGE_SERVER_ERROR' });
        // The last attempt hangs until the shutdown aborts it, like a judge call in flight.
        await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
        throw new RetryableError('aborted', { code: 'JUDGE_ABORTED' });
      },
    };
    suite.harness = await startScorer(suite.database, topics, { producer: suite.producer, maxAttempts: 2, scorers: new Map([['toxicity', scorer]]) });
    const data = await createEvaluation(suite.database, ['toxicity']);
    await produceEvent(suite.producer, topics.events, data);
    await waitFor(() => attempts === 2, { what: 'the last attempt to start' });
    await suite.harness.stop();
    suite.harness = undefined;
    expect(await statusOf(data.evaluationId)).toBe('PENDING');
    expect(await suite.database.db.selectFrom('scores').selectAll().where('evaluation_id', '=', data.evaluationId).execute()).toEqual([]);
    expect(await readDeadLetters(kafkaBrokers(), topics.dlt)).toEqual([]);
  });
});

describe('provider pause and back-pressure together', () => {
  const suite = scorerSuite({ stopHarness: 'afterAll' });

  it('a partition paused for its in-flight bound whose work drains during a provider pause is resumed when the pause ends (no partition stalls after an outage)', async () => {
    const topics = await createTopics(1);
    let openGate!: () => void;
    const gate = new Promise<void>((resolve) => (openGate = resolve));
    const gated: Scorer = {
      dimension: 'toxicity',
      name: 'test-toxicity',
      version: '1',
      async score() {
        await gate;
        return completedScoreRow('toxicity');
      },
    };
    suite.harness = await startScorer(suite.database, topics, { producer: suite.producer, maxInFlight: 4, scorers: new Map([['toxicity', gated]]) });
    const ids: string[] = [];
    for (let i = 0; i < 12; i++) {
      const data = await createEvaluation(suite.database, ['toxicity']);
      await produceEvent(suite.producer, topics.events, data);
      ids.push(data.evaluationId);
    }
    const consumer = suite.harness.consumer;
    await waitFor(() => [...consumer.progress().values()].some((p) => p.paused), { what: 'the partition paused for its in-flight bound' });
    // The provider pushes back (as pauseOnJudgePressure does), and meanwhile the work drains.
    consumer.hold();
    openGate();
    await waitFor(() => consumer.inFlight() === 0, { what: 'the in-flight work to drain during the pause' });
    consumer.release();
    await waitFor(
      async () =>
        (await suite.database.db.selectFrom('evaluations').select('id').where('id', 'in', ids).where('status', '=', 'SCORED').execute()).length === ids.length,
      { what: 'every evaluation scored after the pause', timeoutMs: 20_000 },
    );
  });
});
