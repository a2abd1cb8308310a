// Nothing an input can contain keeps a partition from moving: poison of every kind we know of
// (a judge verdict with a NUL in its reasoning, an evaluation id Postgres rejects, a scorer value
// a CHECK constraint rejects) mixed with normal events on ONE key and one partition, against the
// real fake judge over HTTP, the real Postgres and the real broker.
import { describe, expect, it } from '@jest/globals';
import { sql } from 'kysely';
import type { DimensionDefinition } from '../src/dimensions.js';
import { readDeadLetters } from '../src/dlt.js';
import { createJudge, judgeDimensionDefinitions, loadJudgeConfig, type Judge } from '../consumers/judge/index.js';
import type { Scorer, ScoreRow } from '../consumers/scorer.js';
import { judgePressureClassifier, judgeScorer } from '../consumers/scorers.js';
import { kafkaBrokers, waitFor } from './helpers.js';
import { createEvaluation, createTopics, produceEvent, startScorer, type Harness, judgeScorerSuite } from './scorer-helpers.js';

const strictRange: DimensionDefinition = {
  id: 'strict_range',
  name: 'Strict range',
  description: 'A test scorer that returns a value outside [0, 1] for one marked response.',
  scale: { min: 0, max: 1 },
  direction: 'higher_is_better',
  requiredInputs: ['response'],
  scorerKind: 'HEURISTIC',
  scorerName: 'test-strict-range',
  scorerVersion: '1',
  samplingRate: 1,
};

const outOfRangeScorer: Scorer = {
  dimension: 'strict_range',
  name: 'test-strict-range',
  version: '1',
  async score(inputs): Promise<ScoreRow> {
    return {
      dimension: 'strict_range',
      status: 'COMPLETED',
      value: inputs.response.includes('OUT-OF-RANGE') ? 1.5 : 0.5,
      label: null,
      raw_value: null,
      direction: 'higher_is_better',
      reasoning: 'test',
      source: 'HEURISTIC',
      scorer_name: 'test-strict-range',
      scorer_version: '1',
      error_code: null,
    };
  },
};

describe('poison events on one key', () => {
  const suite = judgeScorerSuite({ max: 20, latencyMs: 10 });
  let judge: Judge | undefined;

  it('an unrecognised handler error is never retried forever: NUL verdicts, urn:uuid ids and out-of-range values end on the DLT or scored, and every normal evaluation on the same key is scored', async () => {
    suite.fake.control({
      scripted: [
        { contains: 'NUL-CASE', reasoning: 'looks fine\u0000 then a NUL' },
        { contains: 'TOKENS-CASE', tokens: 3_000_000_000 },
      ],
    });
    const config = loadJudgeConfig({ EVALBOX_JUDGE_CONFIG: '/judge.json' }, () =>
      JSON.stringify({
        endpoints: [{ name: 'fake', baseUrl: suite.fake.url, model: 'fake-judge-1', timeoutMs: 2000, maxConcurrency: 8 }],
        prices: { 'fake-judge-1': { inputPerMTok: 1, outputPerMTok: 2 } },
      }),
    );
    if (!config) throw new Error('no judge config');
    judge = suite.judge = createJudge({ config, db: suite.database.db });
    const judgeDefinitions = (judgeDimensionDefinitions(config) as DimensionDefinition[]).filter((d) => d.id === 'judge_relevance');
    const topics = await createTopics(1);
    suite.harness = await startScorer(suite.database, topics, {
      producer: suite.producer,
      extraDimensions: [...judgeDefinitions, strictRange],
      isPressure: judgePressureClassifier(judge),
      judge,
      scorers: new Map([...judgeDefinitions.map((d) => [d.id, judgeScorer(judge as Judge, d)] as const), ['strict_range', outOfRangeScorer]]),
    });

    const dims = ['judge_relevance', 'strict_range', 'toxicity'];
    const normal: string[] = [];
    const addNormal = async (i: number) => {
      const data = await createEvaluation(suite.database, dims, { response: `Paris, answer number ${i}.` });
      normal.push(data.evaluationId);
      return data;
    };
    // Every event below is produced with the Kafka key app-1 to the single partition.
    const nulCase = await createEvaluation(suite.database, dims, { response: 'Paris. NUL-CASE' });
    const outOfRange = await createEvaluation(suite.database, dims, { response: 'Paris. OUT-OF-RANGE' });
    const urnTarget = await createEvaluation(suite.database, dims, { response: 'Paris. URN-CASE' });
    const tokensCase = await createEvaluation(suite.database, dims, { response: 'Paris. TOKENS-CASE' });
    const sequence = [
      await addNormal(0),
      nulCase,
      await addNormal(1),
      { ...urnTarget, evaluationId: `urn:uuid:${urnTarget.evaluationId}` },
      await addNormal(2),
      outOfRange,
      tokensCase,
    ];
    for (let i = 3; i < 23; i++) sequence.push(await addNormal(i));
    for (const data of sequence) await produceEvent(suite.producer, topics.events, data);

    const statusOf = async (id: string) =>
      (await suite.database.db.selectFrom('evaluations').select('status').where('id', '=', id).executeTakeFirstOrThrow()).status;
    await waitFor(
      async () =>
        Number(
          (await sql<{ n: string }>`SELECT count(*) AS n FROM evaluations WHERE id = ANY(${normal}::uuid[]) AND status = 'SCORED'`.execute(suite.database.db))
            .rows[0]?.n,
        ) === normal.length,
      { what: 'every normal evaluation SCORED', timeoutMs: 40_000 },
    );
    // The NUL is not a reason to lose a paid verdict: it is stored without the NUL, paid once.
    await waitFor(async () => (await statusOf(nulCase.evaluationId)) === 'SCORED', { what: 'the NUL-case evaluation scored', timeoutMs: 20_000 });
    const nulRow = await suite.database.db
      .selectFrom('scores')
      .select(['status', 'reasoning'])
      .where('evaluation_id', '=', nulCase.evaluationId)
      .where('dimension', '=', 'judge_relevance')
      .executeTakeFirstOrThrow();
    expect(nulRow.status).toBe('COMPLETED');
    expect(nulRow.reasoning).not.toContain('\u0000');
    // The value Postgres rejects ends that one evaluation with its dimensions ERROR, on the DLT.
    await waitFor(async () => (await statusOf(outOfRange.evaluationId)) !== 'PENDING', { what: 'the out-of-range evaluation terminal', timeoutMs: 20_000 });
    const bad = await suite.database.db
      .selectFrom('scores')
      .select(['dimension', 'status', 'error_code'])
      .where('evaluation_id', '=', outOfRange.evaluationId)
      .execute();
    expect(bad.find((r) => r.dimension === 'strict_range')).toMatchObject({ status: 'ERROR', error_code: 'PG_23514' });

    // Token counts beyond the integer column are recorded at its bound, not a poison.
    await waitFor(async () => (await statusOf(tokensCase.evaluationId)) === 'SCORED', { what: 'the token-overflow case scored', timeoutMs: 20_000 });
    const tokensRow = await suite.database.db
      .selectFrom('scores')
      .select(['input_tokens', 'output_tokens'])
      .where('evaluation_id', '=', tokensCase.evaluationId)
      .where('dimension', '=', 'judge_relevance')
      .executeTakeFirstOrThrow();
    expect(tokensRow).toEqual({ input_tokens: 2_147_483_647, output_tokens: 2_147_483_647 });

    const dead = await waitFor(
      async () => {
        const records = await readDeadLetters(kafkaBrokers(), topics.dlt);
        return records.length >= 2 ? records : undefined;
      },
      { what: 'two dead letters' },
    );
    expect(dead.map((d) => d.headers.dlt_error_code).sort()).toEqual(['INVALID_EVENT', 'PG_23514']);
    // The partition moved: everything up to the last event is committed.
    await waitFor(
      async () => {
        const [mark] = await (suite.harness as Harness).consumer.watermarks();
        return mark && mark.committed === sequence.length ? mark : undefined;
      },
      { what: 'the committed offset at the end of the partition', timeoutMs: 10_000 },
    );
    // One paid call per distinct judged content, retries included (the NUL case is not paid again).
    expect(suite.fake.stats().total).toBe(sequence.length - 1);
  });
});
