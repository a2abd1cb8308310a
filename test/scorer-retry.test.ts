// The retry budget of a dimension: what counts against it, and what never ends the work.
import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import { readDeadLetters } from '../src/dlt.js';
import { EvalboxError, RetryableError } from '../src/errors.js';
import type { Producer } from '../src/kafka.js';
import type { Scorer, ScoreRow } from '../consumers/scorer.js';
import { createTestDatabase, kafkaBrokers, waitFor, type TestDatabase } from './helpers.js';
import { createEvaluation, createTopics, produceEvent, startScorer, testProducer, type Harness } from './scorer-helpers.js';

const completedRow: ScoreRow = {
  dimension: 'toxicity',
  status: 'COMPLETED',
  value: 0.5,
  label: null,
  raw_value: null,
  direction: 'lower_is_better',
  reasoning: 'test',
  source: 'HEURISTIC',
  scorer_name: 'test-toxicity',
  scorer_version: '1',
  error_code: null,
};

const isRateLimit = (error: unknown) => error instanceof EvalboxError && error.code === 'JUDGE_RATE_LIMITED';

describe('retry budget', () => {
  let database: TestDatabase;
  let producer: Producer;
  let harness: Harness | undefined;
  beforeAll(async () => {
    database = await createTestDatabase({ max: 10 });
    producer = await testProducer();
  });
  afterEach(async () => {
    await harness?.stop();
    harness = undefined;
  });
  afterAll(async () => {
    await producer.disconnect();
    await database.drop();
  });
  const statusOf = async (id: string) => (await database.db.selectFrom('evaluations').select('status').where('id', '=', id).executeTakeFirstOrThrow()).status;

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
        return completedRow;
      },
    };
    // A retry age (500 ms) shorter than the provider's outage (1.5 s).
    harness = await startScorer(database, topics, {
      producer,
      maxAgeMs: 500,
      maxAttempts: 5,
      isPressure: isRateLimit,
      scorers: new Map([['toxicity', scorer]]),
    });
    const data = await createEvaluation(database, ['toxicity']);
    await produceEvent(producer, topics.events, data);
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
    harness = await startScorer(database, topics, { producer, maxAttempts: 2, scorers: new Map([['toxicity', scorer]]) });
    const data = await createEvaluation(database, ['toxicity']);
    await produceEvent(producer, topics.events, data);
    await waitFor(() => attempts === 2, { what: 'the last attempt to start' });
    await harness.stop();
    harness = undefined;
    expect(await statusOf(data.evaluationId)).toBe('PENDING');
    expect(await database.db.selectFrom('scores').selectAll().where('evaluation_id', '=', data.evaluationId).execute()).toEqual([]);
    expect(await readDeadLetters(kafkaBrokers(), topics.dlt)).toEqual([]);
  });
});
