// The judge cache on the real Postgres with the fake judge over real HTTP: identical content is
// paid for once across evaluations, across concurrent callers in one process and across two
// replicas with their own pools; a dead claimant's claim is taken over, a live one is waited for
// (bounded); failures and unusable answers are not cached.
import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import { sql } from 'kysely';
import { createDb, type DbHandle } from '../src/db/index.js';
import { RetryableError } from '../src/errors.js';
import { claimOrRead, pruneJudgeCache, readCacheRow } from '../consumers/judge/cache.js';
import { loadJudgeConfig, type JudgeConfig } from '../consumers/judge/config.js';
import { createJudge, isProviderPressure, type Judge } from '../consumers/judge/judge.js';
import { compileRubric, BUILTIN_RUBRICS, inputsHash, normaliseInputs, type NormalisedInputs } from '../consumers/judge/rubrics.js';
import { startFakeJudge, type FakeJudge } from '../src/fake-judge/server.js';
import { createTestDatabase, waitFor, type TestDatabase } from './helpers.js';
import { startTcpProxy, type TcpProxy } from './tcp-proxy.js';

const sample = {
  prompt: 'How long do refunds take?',
  response: 'Refunds reach the original payment method within 14 days of receipt.',
  context: ['Refunds go to the original payment method within 14 days.'],
};

function configFor(url: string, extra: Record<string, unknown> = {}, endpoint: Record<string, unknown> = {}): JudgeConfig {
  const config = loadJudgeConfig({ EVALBOX_JUDGE_CONFIG: '/judge.json' }, () =>
    JSON.stringify({
      endpoints: [{ name: 'fake', baseUrl: url, model: 'fake-judge-1', timeoutMs: 2000, maxConcurrency: 32, ...endpoint }],
      prices: { 'fake-judge-1': { inputPerMTok: 1, outputPerMTok: 4 } },
      ...extra,
    }),
  );
  if (!config) throw new Error('no config');
  return config;
}

let fakeUrl = '';
const relevance = compileRubric(BUILTIN_RUBRICS.find((r) => r.id === 'judge_relevance') as (typeof BUILTIN_RUBRICS)[number]);
function relevanceKey(inputs: typeof sample) {
  const normalised = normaliseInputs(relevance, inputs) as { inputs: NormalisedInputs };
  return {
    dimension: 'judge_relevance',
    scorerVersion: relevance.version,
    judgeModel: 'fake-judge-1',
    judgeEndpoint: `${fakeUrl}/v1/chat/completions`,
    promptHash: relevance.promptHash,
    inputsHash: inputsHash(relevance, normalised.inputs),
  };
}

describe('judge cache', () => {
  let database: TestDatabase;
  let fake: FakeJudge;
  const judges: Judge[] = [];
  const pools: DbHandle[] = [];
  const judgeFor = (config: JudgeConfig, handle: DbHandle = database, instanceId?: string) => {
    const judge = createJudge({ config, db: handle.db, ...(instanceId ? { instanceId } : {}) });
    judges.push(judge);
    return judge;
  };
  /** A second connection pool to the same database, as another scorer replica would have. */
  const replicaPool = () => {
    const handle = createDb(database.url, { max: 4, applicationName: 'evalbox-test-replica' });
    pools.push(handle);
    return handle;
  };

  beforeAll(async () => {
    database = await createTestDatabase();
    fake = await startFakeJudge({ latencyMs: 5 });
    fakeUrl = fake.url;
  });
  afterEach(async () => {
    await Promise.all(judges.splice(0).map((j) => j.close()));
    await Promise.all(pools.splice(0).map((p) => p.close()));
    await sql`TRUNCATE judge_cache`.execute(database.db);
    fake.control({ mode: 'ok', latencyMs: 5, fraction: 1 });
    fake.resetStats();
  });
  afterAll(async () => {
    await fake.close();
    await database.drop();
  });

  it('guarantee 4: never pays twice — identical content across 100 evaluations is 1 paid call and 99 cache hits', async () => {
    const judge = judgeFor(configFor(fake.url));
    const outcomes = [];
    for (let evaluation = 0; evaluation < 100; evaluation++) outcomes.push(await judge.score('judge_relevance', sample));
    expect(fake.stats()).toMatchObject({ total: 1, distinctContent: 1 });
    const paid = outcomes.filter((o) => !o.cacheHit);
    const hits = outcomes.filter((o) => o.cacheHit);
    expect(paid).toHaveLength(1);
    expect(hits).toHaveLength(99);
    expect(paid[0]?.inputTokens).toBeGreaterThan(0);
    for (const hit of hits) {
      expect(hit).toMatchObject({ inputTokens: 0, outputTokens: 0, costUsd: 0, requests: 0, status: 'COMPLETED' });
      // The same verdict, model and prompt hash as the paid call: a hit never changes a result.
      expect(hit).toMatchObject({
        value: paid[0]?.value,
        rawValue: paid[0]?.rawValue,
        reasoning: paid[0]?.reasoning,
        judgeModel: paid[0]?.judgeModel,
        promptHash: paid[0]?.promptHash,
        scorerVersion: '1',
      });
    }
    const rows = await sql<{ n: number }>`SELECT count(*)::int AS n FROM judge_cache`.execute(database.db);
    expect(rows.rows[0]?.n).toBe(1);
  });

  it('guarantee 4: never pays twice — the same content through two replicas (two pools) at the same time makes one call', async () => {
    fake.control({ latencyMs: 300 });
    const a = judgeFor(configFor(fake.url), database, 'replica-a');
    const b = judgeFor(configFor(fake.url), replicaPool(), 'replica-b');
    const [fromA, fromB] = await Promise.all([a.score('judge_relevance', sample), b.score('judge_relevance', sample)]);
    expect(fake.stats().total).toBe(1);
    expect([fromA.cacheHit, fromB.cacheHit].sort()).toEqual([false, true]);
    expect(fromA.value).toBe(fromB.value);
  });

  it('guarantee 4: never pays twice — 20 contents scored concurrently by two replicas, each twice, make 20 calls', async () => {
    fake.control({ latencyMs: 100 });
    const a = judgeFor(configFor(fake.url), database, 'replica-a');
    const b = judgeFor(configFor(fake.url), replicaPool(), 'replica-b');
    const inputs = Array.from({ length: 20 }, (_, i) => ({ ...sample, response: `${sample.response} (variant ${i})` }));
    const all = await Promise.all(inputs.flatMap((input) => [a, b, a, b].map((judge) => judge.score('judge_relevance', input))));
    expect(fake.stats()).toMatchObject({ total: 20, distinctContent: 20, duplicates: 0 });
    expect(all.filter((o) => !o.cacheHit)).toHaveLength(20);
    expect(all.every((o) => o.status === 'COMPLETED')).toBe(true);
  });

  it('normalised inputs: whitespace and line-end differences hit the cache; another dimension or model does not', async () => {
    const judge = judgeFor(configFor(fake.url));
    await judge.score('judge_relevance', sample);
    const noisy = await judge.score('judge_relevance', { ...sample, prompt: `  ${sample.prompt}\r\n`, response: `${sample.response}\n\n` });
    expect(noisy.cacheHit).toBe(true);
    // Toxicity reads only the response: the same response under another prompt is a hit.
    await judge.score('judge_toxicity', sample);
    expect((await judge.score('judge_toxicity', { response: sample.response, prompt: 'something else entirely' })).cacheHit).toBe(true);
    const otherModel = judgeFor(configFor(fake.url, {}, { model: 'fake-judge-2' }));
    expect((await otherModel.score('judge_relevance', sample)).cacheHit).toBe(false);
    expect(fake.stats().total).toBe(3);
  });

  it('takes over a claim whose holder died (expired), and pays once', async () => {
    const key = relevanceKey(sample);
    await sql`INSERT INTO judge_cache (dimension, scorer_version, judge_model, judge_endpoint, prompt_hash, inputs_hash, state, claimant, claim_expires_at)
              VALUES (${key.dimension}, ${key.scorerVersion}, ${key.judgeModel}, ${key.judgeEndpoint}, ${key.promptHash}, ${key.inputsHash}, 'CLAIMED', 'dead-replica/1', now() - interval '1 second')`.execute(
      database.db,
    );
    const judge = judgeFor(configFor(fake.url));
    const outcome = await judge.score('judge_relevance', sample);
    expect(outcome).toMatchObject({ status: 'COMPLETED', cacheHit: false });
    expect(fake.stats().total).toBe(1);
    // The verdict is stored alongside the caller, a round trip later.
    await waitFor(async () => (await readCacheRow(database.db, key))?.state === 'DONE', { what: 'the stored verdict' });
  });

  it('guarantee 4: a verdict whose cache write fails in a database outage just after the answer is written once the database is back, not paid again', async () => {
    // The judge's pool reaches Postgres through a proxy that, from the moment the provider answers,
    // lets nothing through, then cuts the connections 1.5 s later (the write fails) and lets new ones through.
    const port = Number(new URL(database.url).port || 5432);
    const proxy = await startTcpProxy(() => port);
    const proxied = new URL(database.url);
    proxied.port = String(proxy.port);
    proxied.hostname = '127.0.0.1';
    const handle = createDb(proxied.toString(), { max: 4, applicationName: 'evalbox-test-proxied' });
    pools.push(handle);
    let outage: Promise<void> | undefined;
    const provider = await startFakeJudge({
      latencyMs: 5,
      onAnswered: () => {
        if (outage) return;
        proxy.holdRequests();
        outage = new Promise((resolve) =>
          setTimeout(() => {
            proxy.cutAll();
            proxy.release();
            resolve();
          }, 1500),
        );
      },
    });
    try {
      const judge = judgeFor(configFor(provider.url, { cache: { claimTtlMs: 2000, maxWaitMs: 3000 } }), handle);
      const first = await judge.score('judge_relevance', sample);
      expect(first).toMatchObject({ status: 'COMPLETED', cacheHit: false });
      await outage;
      // Past the claim's expiry: a verdict that never reached the cache would be paid for again here.
      await new Promise((resolve) => setTimeout(resolve, 2500));
      const second = await judge.score('judge_relevance', sample);
      expect(second).toMatchObject({ status: 'COMPLETED', cacheHit: true, value: first.value });
      expect(provider.stats().byOutcome.ok).toBe(1);
    } finally {
      await provider.close();
      await proxy.close();
    }
  });

  it('guarantee 4: a paid verdict whose store fails while the database is unreachable is stored once it is back, and the redelivery does not pay again', async () => {
    // The cache's pool reaches Postgres through a proxy that stands in for the database going away.
    const proxy: TcpProxy = await startTcpProxy(() => Number(new URL(database.url).port));
    try {
      const url = new URL(database.url);
      url.port = String(proxy.port);
      const handle = createDb(url.toString(), { max: 4, applicationName: 'evalbox-test-outage' });
      pools.push(handle);
      // A short claim TTL, so that the old behaviour (wait out its own claim, then pay again) shows within the test.
      const judge = judgeFor(configFor(fake.url, { cache: { claimTtlMs: 3000 } }), handle);
      fake.control({ latencyMs: 300 });
      const first = judge.score('judge_relevance', sample);
      await waitFor(() => fake.stats().inFlight === 1, { what: 'the judge call in flight' });
      // The database goes away while the provider answers: the verdict is paid for, its store fails.
      proxy.refuse(true);
      proxy.cutAll();
      expect(await first).toMatchObject({ status: 'COMPLETED', cacheHit: false });
      await new Promise((resolve) => setTimeout(resolve, 500));
      expect(fake.stats().total).toBe(1);
      proxy.refuse(false);
      // The evaluation's score write failed too, so the event is redelivered to this replica.
      const again = await judge.score('judge_relevance', sample);
      expect(again).toMatchObject({ status: 'COMPLETED', value: (await first).value });
      expect(fake.stats().total).toBe(1);
      await waitFor(async () => (await readCacheRow(database.db, relevanceKey(sample)))?.state === 'DONE', { what: 'the verdict stored' });
    } finally {
      await proxy.close();
    }
  });

  it('waits for a live claim of another replica and returns its result as a hit', async () => {
    const key = relevanceKey(sample);
    const claimed = await claimOrRead(database.db, key, 'other-replica/1', 60_000);
    expect(claimed.claimed).toBe(true);
    const judge = judgeFor(configFor(fake.url));
    const pending = judge.score('judge_relevance', sample);
    await new Promise((resolve) => setTimeout(resolve, 150));
    // The other replica finishes its call and stores the verdict.
    await sql`UPDATE judge_cache SET state = 'DONE', claimant = NULL, claim_expires_at = NULL,
              outcome = ${JSON.stringify({ status: 'COMPLETED', value: 0.5, label: null, rawValue: 3, reasoning: 'stored by the other replica', direction: 'higher_is_better', errorCode: null, scorerName: 'llm-judge-relevance', endpoint: 'fake', responseFormat: 'json_schema' })}::jsonb
              WHERE inputs_hash = ${key.inputsHash}`.execute(database.db);
    const outcome = await pending;
    expect(outcome).toMatchObject({ cacheHit: true, value: 0.5, reasoning: 'stored by the other replica', costUsd: 0 });
    expect(fake.stats().total).toBe(0);
  });

  it('a live claim that outlasts the wait bound is a RetryableError (JUDGE_CLAIM_BUSY), not a second call', async () => {
    const key = relevanceKey(sample);
    await claimOrRead(database.db, key, 'slow-replica/1', 600_000);
    const judge = judgeFor(configFor(fake.url, { cache: { maxWaitMs: 300 } }));
    const started = Date.now();
    const error = await judge.score('judge_relevance', sample).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RetryableError);
    expect(error).toMatchObject({ code: 'JUDGE_CLAIM_BUSY' });
    expect(isProviderPressure(error)).toBe(true);
    expect(Date.now() - started).toBeLessThan(2000);
    expect(fake.stats().total).toBe(0);
  });

  it('a failed call releases its claim (the next attempt pays once); an unparseable answer is not cached', async () => {
    fake.control({ mode: 'error-burst' });
    const judge = judgeFor(configFor(fake.url));
    await expect(judge.score('judge_relevance', sample)).rejects.toMatchObject({ code: 'JUDGE_SERVER_ERROR' });
    expect(await readCacheRow(database.db, relevanceKey(sample))).toBeUndefined();

    fake.control({ mode: 'malformed' });
    expect(await judge.score('judge_relevance', sample)).toMatchObject({ status: 'ERROR', errorCode: 'JUDGE_UNPARSEABLE', cacheHit: false });
    expect(await readCacheRow(database.db, relevanceKey(sample))).toBeUndefined();

    fake.control({ mode: 'ok' });
    expect(await judge.score('judge_relevance', sample)).toMatchObject({ status: 'COMPLETED', cacheHit: false });
    expect(await judge.score('judge_relevance', sample)).toMatchObject({ status: 'COMPLETED', cacheHit: true });
    expect(fake.stats().byOutcome).toEqual({ server_error: 1, malformed: 2, ok: 1 });
  });

  it('per-tenant visibility: a verdict another application paid for is shared but not shown as a cache hit; it carries that call’s tokens and cost', async () => {
    const judge = judgeFor(configFor(fake.url));
    const paid = await judge.score('judge_relevance', sample, { applicationId: 'tenant-a' });
    expect(paid).toMatchObject({ cacheHit: false, status: 'COMPLETED' });
    expect(paid.inputTokens).toBeGreaterThan(0);
    await waitFor(async () => (await readCacheRow(database.db, relevanceKey(sample)))?.state === 'DONE', { what: 'the stored verdict' });
    // Another replica (a fresh judge, no in-process sharing) answering another tenant.
    const other = await judgeFor(configFor(fake.url)).score('judge_relevance', sample, { applicationId: 'tenant-b' });
    expect(other).toMatchObject({ cacheHit: false, value: paid.value, inputTokens: paid.inputTokens, outputTokens: paid.outputTokens, costUsd: paid.costUsd });
    // In-process sharing tells other tenants nothing either.
    fake.control({ latencyMs: 100 });
    const sharedContent = { ...sample, response: `${sample.response} (shared in-process)` };
    const [first, second] = await Promise.all([
      judge.score('judge_relevance', sharedContent, { applicationId: 'tenant-a' }),
      judge.score('judge_relevance', sharedContent, { applicationId: 'tenant-b' }),
    ]);
    expect([first?.cacheHit, second?.cacheHit]).toEqual([false, false]);
    expect(second?.costUsd).toBe(first?.costUsd);
    // The tenant that paid sees its own hit, at no cost.
    const again = await judgeFor(configFor(fake.url)).score('judge_relevance', sample, { applicationId: 'tenant-a' });
    expect(again).toMatchObject({ cacheHit: true, costUsd: 0, inputTokens: 0 });
    expect(fake.stats().total).toBe(2); // one paid call per content, whoever asked
  });

  it('the judge endpoint is part of the cache key: one model name on two providers never shares verdicts', async () => {
    const otherProvider = await startFakeJudge({ latencyMs: 5 });
    try {
      await judgeFor(configFor(fake.url)).score('judge_relevance', sample);
      const second = await judgeFor(configFor(otherProvider.url)).score('judge_relevance', sample);
      expect(second.cacheHit).toBe(false);
      expect(fake.stats().total).toBe(1);
      expect(otherProvider.stats().total).toBe(1);
    } finally {
      await otherProvider.close();
    }
  });

  it('concurrent duplicates inside one process share one call without polling the database', async () => {
    fake.control({ latencyMs: 100 });
    const judge = judgeFor(configFor(fake.url));
    const lookups: string[] = [];
    judge.events.on('judge:cache', (e) => lookups.push(e.result));
    const outcomes = await Promise.all(Array.from({ length: 10 }, () => judge.score('judge_relevance', sample)));
    expect(fake.stats().total).toBe(1);
    expect(outcomes.filter((o) => o.cacheHit)).toHaveLength(9);
    expect(lookups.sort()).toEqual(['miss', ...Array<string>(9).fill('shared')]);
  });

  it('guarantee 6: stored verdicts are still served while the endpoint circuit is open', async () => {
    const judge = judgeFor(configFor(fake.url, {}, { breaker: { minCalls: 3, failureRate: 0.5, coolDownMs: 60_000 } }));
    await judge.score('judge_relevance', sample);
    fake.control({ mode: 'error-burst' });
    for (let i = 0; i < 2; i++)
      await expect(judge.score('judge_relevance', { ...sample, response: `other ${i}` })).rejects.toMatchObject({ code: 'JUDGE_SERVER_ERROR' });
    expect(judge.endpointState().open).toBe(true);
    expect(await judge.score('judge_relevance', sample)).toMatchObject({ cacheHit: true, status: 'COMPLETED' });
    await expect(judge.score('judge_relevance', { ...sample, response: 'new content' })).rejects.toMatchObject({ code: 'JUDGE_CIRCUIT_OPEN' });
    expect(fake.stats().total).toBe(3);
    // The refused call gave its claim back: nobody waits on a call that never started.
    expect(await readCacheRow(database.db, relevanceKey({ ...sample, response: 'new content' }))).toBeUndefined();
  });

  it('prunes old verdicts and dead claims, never live claims', async () => {
    const judge = judgeFor(configFor(fake.url));
    await judge.score('judge_relevance', sample);
    await waitFor(async () => (await readCacheRow(database.db, relevanceKey(sample)))?.state === 'DONE', { what: 'the stored verdict' });
    await claimOrRead(database.db, relevanceKey({ ...sample, response: 'live' }), 'live/1', 600_000);
    await sql`UPDATE judge_cache SET created_at = now() - interval '2 days'`.execute(database.db);
    expect(await pruneJudgeCache(database.db, 24 * 3600_000)).toBe(1);
    const left = await sql<{ state: string }>`SELECT state FROM judge_cache`.execute(database.db);
    expect(left.rows).toEqual([{ state: 'CLAIMED' }]);
  });
});
