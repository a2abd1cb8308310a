// The LLM judge inside the scoring consumer, against the fake OpenAI-compatible judge over real
// HTTP, the real Postgres and the real Kafka: paid once, an outage is not a DLT flood, never a
// fabricated score.
import { describe, expect, it } from '@jest/globals';
import { sql } from 'kysely';
import { publishDimensions, type DimensionDefinition } from '../src/dimensions.js';
import { readDeadLetters } from '../src/dlt.js';
import { createJudge, judgeDimensionDefinitions, loadJudgeConfig, type Judge } from '../consumers/judge/index.js';
import { judgePressureClassifier, judgeScorer } from '../consumers/scorers.js';
import type { ScoreStore } from '../consumers/score-store.js';
import { startFakeJudge } from '../src/fake-judge/server.js';
import { createTestDatabase, kafkaBrokers, uniqueName, waitFor } from './helpers.js';
import { createEvaluation, createTopics, produceEvent, startScorer, testProducer, judgeScorerSuite } from './scorer-helpers.js';

describe('LLM judge in the scoring consumer', () => {
  const suite = judgeScorerSuite({ max: 30, latencyMs: 20 });
  let judge: Judge | undefined;

  async function start(options: { maxAttempts?: number; wrapStore?: (s: ScoreStore) => ScoreStore } = {}) {
    const config = loadJudgeConfig({ EVALBOX_JUDGE_CONFIG: '/judge.json' }, () =>
      JSON.stringify({
        endpoints: [
          {
            name: 'fake',
            baseUrl: suite.fake.url,
            model: 'fake-judge-1',
            timeoutMs: 2000,
            maxConcurrency: 8,
            breaker: { minCalls: 4, failureRate: 0.5, coolDownMs: 1000, maxCoolDownMs: 2000, windowMs: 10_000 },
          },
        ],
        prices: { 'fake-judge-1': { inputPerMTok: 1, outputPerMTok: 2 } },
      }),
    );
    if (!config) throw new Error('no judge config');
    judge = suite.judge = createJudge({ config, db: suite.database.db });
    const definitions = judgeDimensionDefinitions(config) as DimensionDefinition[];
    const topics = await createTopics(3);
    suite.harness = await startScorer(suite.database, topics, {
      producer: suite.producer,
      maxAttempts: options.maxAttempts ?? 5,
      extraDimensions: definitions,
      isPressure: judgePressureClassifier(judge),
      wrapStore: options.wrapStore,
      judge,
      scorers: new Map(definitions.map((d) => [d.id, judgeScorer(judge as Judge, d)])),
    });
    return topics;
  }

  const statuses = async (ids: string[]) =>
    await suite.database.db
      .selectFrom('scores')
      .select(['status', 'error_code', 'value', 'cache_hit', 'input_tokens', 'cost_usd'])
      .where('evaluation_id', 'in', ids)
      .where('dimension', '=', 'judge_relevance')
      .execute();
  const allTerminal = async (ids: string[]) =>
    Number(
      (await sql<{ n: string }>`SELECT count(*) AS n FROM evaluations WHERE id = ANY(${ids}::uuid[]) AND status <> 'PENDING'`.execute(suite.database.db))
        .rows[0]?.n,
    ) === ids.length;

  it('guarantee 4: identical content across 100 evaluations makes one paid call', async () => {
    const topics = await start();
    const ids: string[] = [];
    for (let i = 0; i < 100; i++) {
      const data = await createEvaluation(suite.database, ['judge_relevance'], { response: 'Paris is the capital of France (same content).' });
      await produceEvent(suite.producer, topics.events, data);
      ids.push(data.evaluationId);
    }
    await waitFor(() => allTerminal(ids), { what: '100 evaluations terminal', timeoutMs: 60_000 });
    const rows = await statuses(ids);
    expect(rows.every((r) => r.status === 'COMPLETED' && typeof r.value === 'number')).toBe(true);
    expect(rows.filter((r) => !r.cache_hit)).toHaveLength(1);
    expect(rows.filter((r) => r.cache_hit).every((r) => r.input_tokens === 0)).toBe(true);
    expect(suite.fake.stats().total).toBe(1);
  });

  it('guarantee 6: a 429 storm then recovery completes everything, leaves the DLT empty, and pays only for distinct contents', async () => {
    const topics = await start({ maxAttempts: 2 });
    let pausedWhileThrottled = false;
    suite.harness?.consumer.events.on('consumer:paused', () => (pausedWhileThrottled = true));
    suite.fake.control({ mode: 'rate-limit', retryAfterSeconds: 1, requests: 6 });
    const ids: string[] = [];
    for (let i = 0; i < 12; i++) {
      const data = await createEvaluation(suite.database, ['judge_relevance'], { response: `Answer number ${i}.` });
      await produceEvent(suite.producer, topics.events, data);
      ids.push(data.evaluationId);
    }
    await waitFor(() => allTerminal(ids), { what: 'every evaluation terminal', timeoutMs: 60_000 });
    expect((await statuses(ids)).every((r) => r.status === 'COMPLETED')).toBe(true);
    const stats = suite.fake.stats();
    expect(stats.byOutcome.rate_limited).toBe(6);
    expect(stats.total).toBe(12 + 6); // distinct contents plus the 429ed attempts
    expect(pausedWhileThrottled).toBe(true);
    expect(suite.harness?.consumer.held()).toBe(false);
    expect(await readDeadLetters(kafkaBrokers(), topics.dlt)).toEqual([]);
  });

  it('guarantee 6: a 60 s outage of 500s opens the breaker and pauses; when it ends everything drains with no DLT record', async () => {
    const topics = await start({ maxAttempts: 3 });
    const outageEnds = Date.now() + 60_000;
    suite.fake.control({ mode: 'error-burst', durationMs: 60_000 });
    const ids: string[] = [];
    for (let i = 0; i < 20; i++) {
      const data = await createEvaluation(suite.database, ['judge_relevance'], { response: `Outage answer ${i}.` });
      await produceEvent(suite.producer, topics.events, data);
      ids.push(data.evaluationId);
    }
    await waitFor(() => (judge as Judge).endpointState('fake').open, { what: 'the circuit to open', timeoutMs: 20_000 });
    // Consumption pauses while the circuit is open…
    expect(suite.harness?.consumer.held()).toBe(true);
    // Still paused and nothing terminal near the end of the outage: the breaker holds it all back.
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, outageEnds - Date.now() - 5_000)));
    expect(suite.harness?.consumer.held()).toBe(true);
    expect(
      await sql<{ n: string }>`SELECT count(*) AS n FROM evaluations WHERE id = ANY(${ids}::uuid[]) AND status <> 'PENDING'`
        .execute(suite.database.db)
        .then((r) => Number(r.rows[0]?.n)),
    ).toBe(0);
    const duringOutage = suite.fake.stats().total;
    await waitFor(() => allTerminal(ids), { what: 'every evaluation terminal after the outage', timeoutMs: 40_000 });
    expect((await statuses(ids)).every((r) => r.status === 'COMPLETED')).toBe(true);
    // …and resumes once the provider answers again.
    await waitFor(() => suite.harness?.consumer.held() === false, { what: 'consumption to resume' });
    // The open circuit kept calls away from the provider: at most the calls in flight when it
    // opened (8) and one probe per cool-down (at least 1 s), never a retry storm of 20 evaluations.
    expect(duringOutage).toBeGreaterThan(0);
    expect(suite.fake.stats().byOutcome.server_error).toBeLessThanOrEqual(8 + 60);
    expect(await readDeadLetters(kafkaBrokers(), topics.dlt)).toEqual([]);
  });

  it('malformed judge output is re-asked once and then recorded as ERROR JUDGE_UNPARSEABLE, never a number', async () => {
    const topics = await start();
    suite.fake.control({ mode: 'malformed' });
    const data = await createEvaluation(suite.database, ['judge_relevance', 'toxicity'], { response: 'Malformed case.' });
    await produceEvent(suite.producer, topics.events, data);
    await waitFor(() => allTerminal([data.evaluationId]), { what: 'terminal' });
    expect(await statuses([data.evaluationId])).toEqual([expect.objectContaining({ status: 'ERROR', error_code: 'JUDGE_UNPARSEABLE', value: null })]);
    expect(suite.fake.stats().total).toBe(2);
    const status = await suite.database.db.selectFrom('evaluations').select('status').where('id', '=', data.evaluationId).executeTakeFirstOrThrow();
    expect(status.status).toBe('PARTIALLY_SCORED');
    const dead = await waitFor(
      async () => {
        const records = await readDeadLetters(kafkaBrokers(), topics.dlt);
        return records.length ? records : undefined;
      },
      { what: 'the dead letter' },
    );
    expect(dead[0]?.headers).toMatchObject({ dlt_error_code: 'JUDGE_UNPARSEABLE', dlt_dimension: 'judge_relevance' });
  });

  it('every paid call is recorded: the tokens of an unparseable answer whose re-ask failed join the row of the retry that succeeded', async () => {
    const topics = await start();
    const paid: { inputTokens: number; outputTokens: number }[] = [];
    judge?.events.on('judge:request', (e) => {
      if (e.inputTokens + e.outputTokens > 0) paid.push(e);
    });
    suite.fake.control({ sequence: ['malformed', 'error-burst'] });
    const data = await createEvaluation(suite.database, ['judge_relevance'], { response: 'Paid-twice case.' });
    await produceEvent(suite.producer, topics.events, data);
    await waitFor(() => allTerminal([data.evaluationId]), { what: 'terminal', timeoutMs: 30_000 });
    const [row] = await statuses([data.evaluationId]);
    expect(row?.status).toBe('COMPLETED');
    expect(paid).toHaveLength(2); // the malformed answer and the verdict; the 500 carried no usage
    expect(row?.input_tokens).toBe(paid.reduce((n, r) => n + r.inputTokens, 0));
  });

  it('finding: a replica without a judge leaves a judge dimension that a live replica offers for that replica, instead of writing it ERROR NO_SCORER', async () => {
    const topics = await createTopics(1);
    // Another replica, with the judge, offers judge_relevance (it re-publishes it as it runs).
    const config = loadJudgeConfig({ EVALBOX_JUDGE_BASE_URL: suite.fake.url, EVALBOX_JUDGE_MODEL: 'fake-judge-1' });
    if (!config) throw new Error('no judge config');
    const definitions = judgeDimensionDefinitions(config) as DimensionDefinition[];
    await publishDimensions(suite.database.db, definitions);
    const groupId = uniqueName('mixed-group');
    // This replica has no judge: its registry and scorers are the offline ones only.
    suite.harness = await startScorer(suite.database, topics, { producer: suite.producer, groupId });
    let waits = 0;
    suite.harness.consumer.events.on('consumer:handlerFailed', ({ error }) => {
      if ((error as { code?: string }).code === 'SCORER_ELSEWHERE') waits++;
    });
    const data = await createEvaluation(suite.database, ['toxicity', 'judge_relevance'], { response: 'Left for the judge.' });
    await produceEvent(suite.producer, topics.events, data);
    await waitFor(() => waits >= 1, { what: 'the replica without a judge to leave the event' });
    expect(await suite.database.db.selectFrom('scores').select(['dimension', 'status']).where('evaluation_id', '=', data.evaluationId).execute()).toEqual([]);
    expect((await suite.database.db.selectFrom('evaluations').select('status').where('id', '=', data.evaluationId).executeTakeFirstOrThrow()).status).toBe(
      'PENDING',
    );
    // The replica with the judge takes the partition over and scores both dimensions.
    await suite.harness.stop();
    suite.harness = undefined;
    judge = suite.judge = createJudge({ config, db: suite.database.db });
    suite.harness = await startScorer(suite.database, topics, {
      producer: suite.producer,
      groupId,
      extraDimensions: definitions,
      judge,
      scorers: new Map(definitions.map((d) => [d.id, judgeScorer(judge as Judge, d)])),
    });
    await waitFor(() => allTerminal([data.evaluationId]), { what: 'scored by the replica with the judge', timeoutMs: 30_000 });
    const rows = await suite.database.db
      .selectFrom('scores')
      .select(['dimension', 'status'])
      .where('evaluation_id', '=', data.evaluationId)
      .orderBy('dimension')
      .execute();
    expect(rows).toEqual([
      { dimension: 'judge_relevance', status: 'COMPLETED' },
      { dimension: 'toxicity', status: 'COMPLETED' },
    ]);
  });

  it('guarantee 4: a lost database connection between the judge’s answer and the score write costs no second paid call (the kill -9 case: judge-crash.test.ts)', async () => {
    let failures = 1;
    const topics = await start({
      wrapStore: (store) => ({
        load: store.load.bind(store),
        redriveApplied: store.redriveApplied.bind(store),
        offeredByLiveScorers: store.offeredByLiveScorers.bind(store),
        async commit(item) {
          // What node-postgres throws when the server goes away mid-query.
          if (failures-- > 0) throw new Error('Connection terminated unexpectedly');
          return store.commit(item);
        },
      }),
    });
    const data = await createEvaluation(suite.database, ['judge_relevance'], { response: 'Crash case.' });
    await produceEvent(suite.producer, topics.events, data);
    await waitFor(() => allTerminal([data.evaluationId]), { what: 'terminal after the retry', timeoutMs: 30_000 });
    const [row] = await statuses([data.evaluationId]);
    expect(row).toMatchObject({ status: 'COMPLETED', cache_hit: true });
    expect(suite.fake.stats().total).toBe(1);
  });
});

describe('two scorer processes sharing one judge provider', () => {
  it('guarantee 4: two replicas on the same backlog make no duplicated paid call', async () => {
    const { spawn } = await import('node:child_process');
    const database = await createTestDatabase({ max: 5 });
    const producer = await testProducer();
    const fake = await startFakeJudge({ latencyMs: 30 });
    const children: import('node:child_process').ChildProcess[] = [];
    try {
      const topics = await createTopics(6);
      const ids: string[] = [];
      // 60 evaluations over 15 distinct contents, spread over six partitions.
      for (let i = 0; i < 60; i++) {
        const data = await createEvaluation(database, ['judge_relevance'], { response: `Shared content ${i % 15}.`, applicationId: `app-${i % 6}` });
        await produceEvent(producer, topics.events, data);
        ids.push(data.evaluationId);
      }
      const env = {
        ...process.env,
        EVALBOX_TOPIC_EVENTS: topics.events,
        EVALBOX_TOPIC_SCORES: topics.scores,
        EVALBOX_TOPIC_DLT: topics.dlt,
        EVALBOX_JUDGE_BASE_URL: fake.url,
        EVALBOX_JUDGE_MODEL: 'fake-judge-1',
        EVALBOX_LOG_LEVEL: 'warn',
      };
      for (let i = 0; i < 2; i++) {
        children.push(
          spawn('node', ['bin/evalbox.js', 'scorer', '--database-url', database.url, '--kafka-brokers', kafkaBrokers(), '--group', 'two-replicas'], {
            env,
            stdio: 'ignore',
          }),
        );
      }
      await waitFor(
        async () =>
          Number((await sql<{ n: string }>`SELECT count(*) AS n FROM evaluations WHERE status <> 'PENDING'`.execute(database.db)).rows[0]?.n) === ids.length,
        { what: 'every evaluation terminal', timeoutMs: 90_000 },
      );
      const rows = await database.db.selectFrom('scores').select(['status', 'cache_hit']).where('dimension', '=', 'judge_relevance').execute();
      expect(rows).toHaveLength(60);
      expect(rows.every((r) => r.status === 'COMPLETED')).toBe(true);
      // Cache hits are visible per tenant: each application's first use of a content reads as its
      // own call (at least 15 contents x 2 applications; concurrent uses by one application on two
      // replicas can each read so), while the provider is paid once per content.
      expect(rows.filter((r) => !r.cache_hit).length).toBeGreaterThanOrEqual(30);
      expect(fake.stats().total).toBe(15);
      expect(fake.stats().duplicates).toBe(0);
    } finally {
      for (const c of children) c.kill('SIGTERM');
      await Promise.all(children.map((c) => new Promise((r) => (c.exitCode !== null ? r(null) : c.once('exit', r)))));
      await fake.close();
      await producer.disconnect();
      await database.drop();
    }
  });
});
