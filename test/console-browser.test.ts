// The web console end to end in a real headless browser (Debian chromium + playwright-core),
// against the real stack: the API served over HTTP, the relay, the scoring consumer with the LLM
// judge against the fake OpenAI-compatible judge, Postgres and Kafka. Screenshots of every page at
// desktop and phone width go to test-output/console/.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { Page } from 'playwright-core';
import { createApiApp } from '../src/api/app.js';
import { createKeyResolver } from '../src/api/auth.js';
import { loadConfig, type Topics } from '../src/config.js';
import { createConsoleApp, type ConsoleApp } from '../src/console/app.js';
import { createDimensionRegistry, type DimensionDefinition } from '../src/dimensions.js';
import { createKafka, ensureTopics, type Producer } from '../src/kafka.js';
import { createApiKey } from '../src/keys.js';
import { silentLogger } from '../src/logging.js';
import { closeServer, createRegistry, listen, serveAdmin, type AdminServer } from '../src/metrics.js';
import type { Relay } from '../outbox-relay/relay.js';
import { createJudge, initJudgeGauges, judgeDimensionDefinitions, loadJudgeConfig, registerJudgeMetrics, type Judge } from '../consumers/judge/index.js';
import { judgePressureClassifier, judgeScorer } from '../consumers/scorers.js';
import { startFakeJudge, type FakeJudge } from '../src/fake-judge/server.js';
import { launchBrowser, screenshotPath, type TestBrowser } from './browser.js';
import { createTestDatabase, kafkaBrokers, uniqueName, waitFor, type TestDatabase } from './helpers.js';
import { startTestRelay } from './relay-helpers.js';
import { startScorer, testProducer, type Harness } from './scorer-helpers.js';

const OPERATOR_TOKEN = 'console-test-operator-token-0123456789';
const HEURISTICS = ['groundedness', 'answer_relevance', 'pii_leak', 'toxicity'];
const JUDGED = ['judge_relevance', 'judge_faithfulness'];

describe('web console in a real browser', () => {
  let database: TestDatabase;
  let topics: Topics;
  let producer: Producer;
  let fake: FakeJudge;
  let judge: Judge;
  let scorer: Harness;
  let relay: Relay;
  let judgeAdmin: AdminServer;
  let consoleApp: ConsoleApp;
  const servers: Awaited<ReturnType<typeof listen>>[] = [];
  let apiUrl: string;
  let consoleUrl: string;
  let keyA: string;
  let keyB: string;
  let browser: TestBrowser;
  let operator: Page;
  const groupId = uniqueName('console-scorer');

  async function post(body: Record<string, unknown>, key = keyA): Promise<string> {
    const response = await fetch(`${apiUrl}/v1/evaluations`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' },
      body: JSON.stringify(body),
    });
    expect(response.status).toBe(202);
    return ((await response.json()) as { evaluationId: string }).evaluationId;
  }

  const evaluation = (overrides: Record<string, unknown> = {}) => ({
    prompt: 'What is the capital of France?',
    response: 'The capital of France is Paris.',
    context: ['Paris is the capital and largest city of France.'],
    modelId: 'demo-model',
    dimensions: [...HEURISTICS, ...JUDGED],
    ...overrides,
  });

  const statusOf = async (id: string) => (await database.db.selectFrom('evaluations').select('status').where('id', '=', id).executeTakeFirstOrThrow()).status;

  async function signIn(page: Page, token: string): Promise<void> {
    await page.goto(`${consoleUrl}/login`);
    await page.fill('#token', token);
    await Promise.all([page.waitForURL((url) => !url.pathname.startsWith('/login')), page.click('button[type=submit]')]);
  }

  /** Desktop and phone-width screenshots of what `page` shows now. */
  async function shoot(page: Page, name: string): Promise<void> {
    await page.waitForLoadState('networkidle').catch(() => {});
    await page.screenshot({ path: screenshotPath(`${name}-1280`), fullPage: true });
    const size = page.viewportSize();
    await page.setViewportSize({ width: 390, height: 844 });
    await page.waitForTimeout(250);
    await page.screenshot({ path: screenshotPath(`${name}-390`), fullPage: true });
    if (size) await page.setViewportSize(size);
  }

  beforeAll(async () => {
    database = await createTestDatabase({ max: 40 });
    const base = uniqueName('console');
    topics = { events: `${base}.events`, scores: `${base}.scores`, dlt: `${base}.events.DLT` };
    await ensureTopics(createKafka(kafkaBrokers(), 'evalbox-test-admin'), [
      { topic: topics.events, numPartitions: 3 },
      { topic: topics.scores, numPartitions: 1 },
      { topic: topics.dlt, numPartitions: 1 },
    ]);
    producer = await testProducer();
    fake = await startFakeJudge({ latencyMs: 5 });
    const judgeConfig = loadJudgeConfig({ EVALBOX_JUDGE_CONFIG: '/judge.json' }, () =>
      JSON.stringify({
        endpoints: [{ name: 'fake', baseUrl: fake.url, model: 'fake-judge-1', timeoutMs: 3000, maxConcurrency: 8 }],
        prices: { 'fake-judge-1': { inputPerMTok: 1, outputPerMTok: 2 } },
      }),
    );
    if (!judgeConfig) throw new Error('no judge config');
    judge = createJudge({ config: judgeConfig, db: database.db });
    const definitions = judgeDimensionDefinitions(judgeConfig) as DimensionDefinition[];
    // The scorer's admin /metrics, as `evalbox scorer --admin-port` serves it: the console reads judge state there.
    const registry = createRegistry('scorer');
    registerJudgeMetrics(registry, judge.events);
    initJudgeGauges(registry, [{ endpoint: 'fake', limit: 8 }]);
    judgeAdmin = await serveAdmin(registry, async () => {}, 0, '127.0.0.1');
    scorer = await startScorer(database, topics, {
      producer,
      groupId,
      maxAttempts: 2,
      extraDimensions: definitions,
      isPressure: judgePressureClassifier(judge),
      judge,
      scorers: new Map(definitions.map((d) => [d.id, judgeScorer(judge, d)])),
    });
    relay = startTestRelay(database);
    await relay.start();

    const config = loadConfig({
      DATABASE_URL: database.url,
      KAFKA_BROKERS: kafkaBrokers(),
      EVALBOX_TOPIC_EVENTS: topics.events,
      EVALBOX_TOPIC_SCORES: topics.scores,
      EVALBOX_TOPIC_DLT: topics.dlt,
    });
    const api = createApiApp({
      db: database.db,
      pool: database.pool,
      config,
      registry: createRegistry('api'),
      logger: silentLogger(),
      dimensions: createDimensionRegistry(definitions),
      keys: createKeyResolver(database.db, { ttlMs: 0 }),
    });
    const apiServer = await listen(api, 0, '127.0.0.1');
    servers.push(apiServer);
    apiUrl = `http://127.0.0.1:${apiServer.port}`;
    keyA = (await createApiKey(database.db, 'app-a')).key;
    keyB = (await createApiKey(database.db, 'app-b')).key;

    consoleApp = createConsoleApp({
      db: database.db,
      config,
      logger: silentLogger(),
      operatorToken: OPERATOR_TOKEN,
      scorerGroup: groupId,
      scorerMetricsUrls: [`http://127.0.0.1:${judgeAdmin.port}/metrics`],
      refreshSeconds: 1,
    });
    const consoleServer = await listen(consoleApp.app, 0, '127.0.0.1');
    servers.push(consoleServer);
    consoleUrl = `http://127.0.0.1:${consoleServer.port}`;

    browser = await launchBrowser();
    operator = await (await browser.newContext()).newPage();
    await signIn(operator, OPERATOR_TOKEN);
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    for (const s of servers) await closeServer(s.server);
    await consoleApp?.close();
    await relay?.stop();
    await scorer?.stop();
    await judge?.close();
    await judgeAdmin?.close();
    await fake?.close();
    await producer?.disconnect();
    await database?.drop();
  }, 60_000);

  it('the sign-in page and an empty console render', async () => {
    const anonymous = await browser.newContext();
    const page = await anonymous.newPage();
    await page.goto(`${consoleUrl}/pipeline`);
    expect(new URL(page.url()).pathname).toBe('/login');
    await shoot(page, 'login');
    await anonymous.close();
    await operator.goto(`${consoleUrl}/evaluations`);
    await expect(operator.locator('.empty-title').textContent()).resolves.toBe('No evaluations yet.');
    await shoot(operator, 'evaluations-empty');
  });

  it('pipeline: the outbox backlog grows while the relay is stopped and drains after it starts', async () => {
    await relay.stop();
    await operator.goto(`${consoleUrl}/pipeline`);
    const pending = operator.locator(`[data-table=backlog] tr[data-topic="${topics.events}"] [data-pending]`);
    // allTextContents does not wait: the row is absent once nothing is pending (and the live part is swapped every second).
    const pendingCount = async () => Number((await pending.allTextContents())[0]?.replace(/,/g, '') ?? 0);

    for (let i = 0; i < 3; i++) await post(evaluation({ response: `Paris, answer ${i}.` }));
    // The page refreshes itself: no reload here.
    await waitFor(async () => (await pendingCount()) === 3, { what: 'a backlog of 3 on the pipeline page', timeoutMs: 20_000 });
    for (let i = 0; i < 4; i++) await post(evaluation({ response: `Paris, later answer ${i}.` }));
    await waitFor(async () => (await pendingCount()) === 7, { what: 'the backlog to grow to 7', timeoutMs: 20_000 });
    await expect(operator.locator('[data-stage=accepted]').textContent()).resolves.toBe('7');
    await expect(operator.locator('[data-table=shards] tbody tr').first().textContent()).resolves.toContain('no leader');
    await shoot(operator, 'pipeline-backlog');

    relay = startTestRelay(database);
    await relay.start();
    await waitFor(async () => (await pendingCount()) === 0, { what: 'the backlog to drain', timeoutMs: 30_000 });
    await waitFor(async () => Number(await operator.locator('[data-stage=scored]').textContent()) === 7, {
      what: '7 scored on the pipeline page',
      timeoutMs: 30_000,
    });
    await expect(operator.locator('[data-table=shards] tbody tr').first().textContent()).resolves.toContain(relay.instanceId);
    await expect(operator.locator('[data-table=judge] tbody tr').first().textContent()).resolves.toContain('closed');
    await shoot(operator, 'pipeline-drained');
  });

  it('evaluations: one posted through the API appears in the list, and its detail shows every dimension with score and reasoning', async () => {
    const id = await post(evaluation({ prompt: 'Which city is the capital of France?', response: 'Paris is the capital of France.', modelId: 'list-model' }));
    await waitFor(async () => (await statusOf(id)) === 'SCORED', { what: 'the evaluation to be scored' });
    await operator.goto(`${consoleUrl}/evaluations?model=list-model`);
    const row = operator.locator(`tr[data-evaluation="${id}"]`);
    await expect(row.count()).resolves.toBe(1);
    await expect(row.locator('.chip').count()).resolves.toBe(6);
    await shoot(operator, 'evaluations-list');

    await row.locator('a').first().click();
    await operator.waitForURL(`${consoleUrl}/evaluations/${id}`);
    const stored = await database.db.selectFrom('scores').selectAll().where('evaluation_id', '=', id).execute();
    expect(stored.map((s) => s.dimension).sort()).toEqual([...HEURISTICS, ...JUDGED].sort());
    for (const score of stored) {
      const card = operator.locator(`article[data-dimension="${score.dimension}"]`);
      await expect(card.locator('[data-score]').textContent()).resolves.toBe((score.value as number).toFixed(2));
      await expect(card.locator('[data-reasoning]').textContent()).resolves.toBe(score.reasoning);
      const facts = (await card.locator('dl.facts').textContent()) ?? '';
      expect(facts).toContain(score.scorer_name);
      expect(facts).toContain(score.scorer_version);
      if (score.judge_model) {
        expect(facts).toContain(score.judge_model);
        expect(facts).toContain('Tokens');
        expect(facts).toContain('Cache hit');
      }
    }
    await expect(operator.locator('[data-trace-id]').textContent()).resolves.toBe('4bf92f3577b34da6a3ce929d0e0e4736');
    await waitFor(
      async () => {
        await operator.reload();
        return (await operator.locator('ol.timeline li.done').count()) === 5;
      },
      { what: 'every timeline step done (the result event published)' },
    );
    // Where the relay put the event on Kafka, looked up by its ce_id.
    await expect(operator.locator('[data-kafka-position]').textContent({ timeout: 20_000 })).resolves.toMatch(/^partition [0-2], offset \d+$/);
    await shoot(operator, 'evaluation-detail');
  });

  it('a prompt, response and model containing <script> render as text and run nothing', async () => {
    const hostile = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">"\'&amp;';
    const model = '"><script>window.__pwned = 3</script>';
    const id = await post(evaluation({ prompt: hostile, response: hostile, context: [hostile], modelId: model, dimensions: HEURISTICS }));
    await waitFor(async () => (await statusOf(id)) !== 'PENDING', { what: 'the hostile evaluation to be scored' });
    for (const url of [`${consoleUrl}/evaluations/${id}`, `${consoleUrl}/evaluations`]) {
      const response = await operator.goto(url);
      expect(response?.headers()['content-security-policy']).toContain("script-src 'self'");
      await expect(operator.evaluate(() => (globalThis as { __pwned?: number }).__pwned)).resolves.toBeUndefined();
      await expect(operator.locator('main script, main img').count()).resolves.toBe(0);
    }
    await operator.goto(`${consoleUrl}/evaluations/${id}`);
    await expect(operator.locator('[data-field=response]').textContent()).resolves.toBe(hostile);
    await expect(operator.locator('[data-field=prompt]').textContent()).resolves.toBe(hostile);
    await expect(operator.locator('[data-field=context]').textContent()).resolves.toBe(hostile);
    await operator.goto(`${consoleUrl}/evaluations`);
    await expect(operator.locator(`tr[data-evaluation="${id}"] td`).nth(3).textContent()).resolves.toBe(model);
    await shoot(operator, 'evaluation-hostile');
  });

  it("an application key cannot see another application's evaluation", async () => {
    const ofA = await post(evaluation({ response: 'Paris (application a).' }), keyA);
    const ofB = await post(evaluation({ response: 'Paris (application b).' }), keyB);
    const owner = await browser.newContext();
    const page = await owner.newPage();
    await signIn(page, keyB);
    expect(new URL(page.url()).pathname).toBe('/evaluations');
    await expect(page.locator(`tr[data-evaluation="${ofB}"]`).count()).resolves.toBe(1);
    await expect(page.locator(`tr[data-evaluation="${ofA}"]`).count()).resolves.toBe(0);
    await expect(page.locator('tr[data-evaluation]').count()).resolves.toBe(1);
    await expect(page.locator('select[name=application]').count()).resolves.toBe(0);
    const detail = await page.goto(`${consoleUrl}/evaluations/${ofA}`);
    expect(detail?.status()).toBe(404);
    await expect(page.locator('main').textContent()).resolves.not.toContain('application a');
    // Naming the other application in the query changes nothing: the key is pinned to its own.
    await page.goto(`${consoleUrl}/evaluations?application=app-a`);
    await expect(page.locator(`tr[data-evaluation="${ofA}"]`).count()).resolves.toBe(0);
    const pipeline = await page.goto(`${consoleUrl}/pipeline`);
    expect(pipeline?.status()).toBe(403);
    const quality = await page.goto(`${consoleUrl}/quality?application=app-a`);
    expect(quality?.status()).toBe(200);
    await waitFor(async () => (await statusOf(ofB)) === 'SCORED', { what: "application b's evaluation to be scored" });
    await page.goto(`${consoleUrl}/quality`);
    await shoot(page, 'quality-application');
    await owner.close();
  });

  it('a dead letter is redriven from the page and its evaluation ends scored', async () => {
    fake.control({ mode: 'bad-request' });
    const id = await post(evaluation({ prompt: 'Name the capital of France, please.', response: 'It is Paris.' }));
    await waitFor(async () => (await statusOf(id)) !== 'PENDING', { what: 'the evaluation to fail its judge dimensions', timeoutMs: 30_000 });
    expect(await statusOf(id)).not.toBe('SCORED');
    fake.control({ mode: 'ok' });

    await operator.goto(`${consoleUrl}/dead-letters`);
    const row = operator.locator(`[data-table=dlt] tr:has(a[href="/evaluations/${id}"])`);
    await row.first().waitFor({ timeout: 30_000 });
    await shoot(operator, 'dead-letters');
    await row.first().locator('a.button').click();
    await operator.locator('[data-confirm]').waitFor();
    await shoot(operator, 'dead-letters-confirm');
    await Promise.all([operator.waitForURL(/\/dead-letters\?done=redriven/), operator.click('[data-confirm] button[type=submit]')]);
    await expect(operator.locator('[data-flash]').textContent()).resolves.toContain('Redriven 1 dead letter');
    await waitFor(async () => (await statusOf(id)) === 'SCORED', { what: 'the redriven evaluation to end scored', timeoutMs: 30_000 });
    await operator.goto(`${consoleUrl}/evaluations/${id}`);
    await expect(operator.locator('h1 .badge').textContent()).resolves.toBe('scored');
  });

  it('the quality page draws its charts from the scores', async () => {
    await operator.goto(`${consoleUrl}/quality?window=24h`);
    await operator.locator('.chart .uplot').first().waitFor();
    await expect(operator.locator('[data-table=quality] tr[data-dimension]').count()).resolves.toBe(HEURISTICS.length + JUDGED.length);
    await expect(operator.locator('[data-table=cost] tbody tr').first().textContent()).resolves.toContain('fake-judge-1');
    await shoot(operator, 'quality');
  });
});
