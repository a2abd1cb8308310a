// The cost-aware cascade inside the scoring consumer, end to end: real Postgres, real Kafka, the
// fake judge over real HTTP. Confident offline verdicts are final and cost nothing; only the
// unsure ones reach the judge; a judge answering garbage never turns into a fabricated score.
import { describe, expect, it } from '@jest/globals';
import { sql } from 'kysely';
import { Registry } from 'prom-client';
import type { DimensionDefinition } from '../src/dimensions.js';
import { applyScoringModes, createCascadeEvents, loadCascadeConfig, registerCascadeMetrics } from '../consumers/cascade.js';
import { createJudge, judgeDimensionDefinitions, loadJudgeConfig, type Judge } from '../consumers/judge/index.js';
import { buildScorers, judgePressureClassifier } from '../consumers/scorers.js';
import { createDimensionRegistry } from '../src/dimensions.js';
import { waitFor } from './helpers.js';
import { createEvaluation, createTopics, produceEvent, startScorer, judgeScorerSuite } from './scorer-helpers.js';

const CONTEXT = ['Paris is the capital and largest city of France.', 'Our plan includes 10 GB of storage.'];
// Offline verdicts the scorers are sure of, and ones they are not (see test/heuristics.test.ts).
const CONFIDENT = {
  groundedness: 'Paris is not the capital of France.', // a negation the context does not have
  toxicity: 'Thanks, that solved it.',
};
const UNSURE = {
  groundedness: 'The plan includes 10 GB of storage and phone support.', // mostly the context's words, one addition
  toxicity: 'Holy shit, the build finally passed!', // swearing aimed at no one
};

describe('cascade: offline first, the judge for the unsure', () => {
  const suite = judgeScorerSuite({ max: 20, latencyMs: 5 });
  let judge: Judge | undefined;
  let metrics: Registry;

  async function start(modes: string) {
    const config = loadJudgeConfig({ EVALBOX_JUDGE_CONFIG: '/judge.json' }, () =>
      JSON.stringify({
        endpoints: [{ name: 'fake', baseUrl: suite.fake.url, model: 'fake-judge-1', timeoutMs: 2000, maxConcurrency: 8 }],
        prices: { 'fake-judge-1': { inputPerMTok: 3, outputPerMTok: 15 } },
      }),
    );
    if (!config) throw new Error('no judge config');
    judge = suite.judge = createJudge({ config, db: suite.database.db });
    const judgeDimensions = judgeDimensionDefinitions(config) as DimensionDefinition[];
    const definitions = createDimensionRegistry(judgeDimensions).list();
    const events = createCascadeEvents();
    metrics = new Registry();
    registerCascadeMetrics(metrics, events);
    const scorers = applyScoringModes(buildScorers(definitions, judge), definitions, {
      judge,
      config: loadCascadeConfig({ EVALBOX_SCORING_MODES: modes }, judge),
      events,
    });
    const topics = await createTopics(3);
    suite.harness = await startScorer(suite.database, topics, {
      producer: suite.producer,
      maxAttempts: 2,
      extraDimensions: judgeDimensions,
      isPressure: judgePressureClassifier(judge),
      judge,
      scorers,
    });
    return topics;
  }

  async function score(topic: string, dimension: string, response: string) {
    const data = await createEvaluation(suite.database, [dimension], { response, context: CONTEXT, prompt: 'What does the plan include?' });
    await produceEvent(suite.producer, topic, data);
    return data.evaluationId;
  }
  const rowsOf = async (ids: string[]) => {
    await waitFor(
      async () =>
        Number(
          (await sql<{ n: string }>`SELECT count(*) AS n FROM evaluations WHERE id = ANY(${ids}::uuid[]) AND status <> 'PENDING'`.execute(suite.database.db))
            .rows[0]?.n,
        ) === ids.length,
      { what: 'evaluations terminal', timeoutMs: 60_000 },
    );
    const rows = await suite.database.db.selectFrom('scores').selectAll().where('evaluation_id', 'in', ids).execute();
    return new Map(rows.map((r) => [r.evaluation_id, r]));
  };
  const metric = async (name: string, labels: Record<string, string>) => {
    const found = (await metrics.getMetricsAsJSON()).find((m) => m.name === name);
    const values = (found?.values ?? []) as { value: number; labels: Record<string, string | number> }[];
    return values.filter((v) => Object.entries(labels).every(([k, l]) => String(v.labels[k]) === l)).reduce((sum, v) => sum + v.value, 0);
  };

  it('a confident offline verdict is final and costs nothing; an unsure one is scored by the judge, paid once, and both are metrics', async () => {
    const topics = await start('groundedness=cascade,toxicity=cascade');
    const confident = [await score(topics.events, 'groundedness', CONFIDENT.groundedness), await score(topics.events, 'toxicity', CONFIDENT.toxicity)];
    const unsure = [await score(topics.events, 'groundedness', UNSURE.groundedness), await score(topics.events, 'toxicity', UNSURE.toxicity)];
    const rows = await rowsOf([...confident, ...unsure]);
    for (const id of confident) {
      expect(rows.get(id)).toMatchObject({ status: 'COMPLETED', source: 'HEURISTIC', judge_model: null, cost_usd: null });
      expect(rows.get(id)?.reasoning).toMatch(/confidence 0\.[89]/);
    }
    for (const id of unsure) {
      const row = rows.get(id);
      expect(row).toMatchObject({ status: 'COMPLETED', source: 'LLM_JUDGE', judge_model: 'fake-judge-1', scorer_name: expect.stringMatching(/^cascade-/) });
      expect(Number(row?.cost_usd)).toBeGreaterThan(0);
      expect(row?.reasoning).toMatch(/offline scorer: .* confidence 0\.[56]/);
    }
    expect(rows.get(unsure[0] as string)?.scorer_version).toMatch(/^2\+judge-1@0\.8$/);
    // Only the two unsure evaluations reached the judge.
    expect(suite.fake.stats().total).toBe(2);
    expect(await metric('evalbox_cascade_decisions_total', { route: 'offline', reason: 'confident' })).toBe(2);
    expect(await metric('evalbox_cascade_decisions_total', { route: 'judge', reason: 'uncertain' })).toBe(2);
    expect(await metric('evalbox_cascade_agreement_total', {})).toBe(2);
    expect(await metric('evalbox_cascade_judge_spend_usd_total', {})).toBeCloseTo(
      [...rows.values()].reduce((sum, r) => sum + Number(r.cost_usd ?? 0), 0),
      9,
    );
  });

  it('judge mode sends every evaluation of the dimension to the judge; heuristic mode none', async () => {
    const topics = await start('groundedness=judge,toxicity=heuristic');
    const ids = [await score(topics.events, 'groundedness', CONFIDENT.groundedness), await score(topics.events, 'toxicity', UNSURE.toxicity)];
    const rows = await rowsOf(ids);
    expect(rows.get(ids[0] as string)).toMatchObject({ status: 'COMPLETED', source: 'LLM_JUDGE', scorer_name: 'judge-groundedness' });
    expect(rows.get(ids[1] as string)).toMatchObject({ status: 'COMPLETED', source: 'HEURISTIC', scorer_name: 'heuristic-toxicity' });
    expect(suite.fake.stats().total).toBe(1);
  });

  it('a judge answering garbage never becomes a score: the unsure evaluation is an ERROR, the confident one is unaffected', async () => {
    const topics = await start('groundedness=cascade');
    suite.fake.control({ mode: 'malformed' });
    const confident = await score(topics.events, 'groundedness', CONFIDENT.groundedness);
    // New content: the judge's cache would answer the earlier test's content without a call.
    const unsure = await score(topics.events, 'groundedness', 'The plan includes 10 GB of storage and phone support for teams.');
    const rows = await rowsOf([confident, unsure]);
    expect(rows.get(confident)).toMatchObject({ status: 'COMPLETED', source: 'HEURISTIC' });
    expect(rows.get(unsure)).toMatchObject({ status: 'ERROR', value: null, source: 'LLM_JUDGE' });
  });

  it('a cascade without a judge, or for a dimension with no judge rubric, is a configuration error at start', () => {
    expect(() => loadCascadeConfig({ EVALBOX_SCORING_MODES: 'groundedness=cascade' }, undefined)).toThrow(/needs a judge/);
    expect(() => loadCascadeConfig({ EVALBOX_SCORING_MODES: 'pii_leak=cascade' }, { dimensions: [] })).toThrow(/no judge rubric/);
    expect(() => loadCascadeConfig({ EVALBOX_SCORING_MODES: 'groundedness=maybe' }, { dimensions: [] })).toThrow(/must be/);
    expect(loadCascadeConfig({}, undefined).modes).toEqual({});
  });
});
