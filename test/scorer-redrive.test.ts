// Redrive from the DLT: idempotent (the same redrive twice changes, pays and publishes nothing),
// back to the original partition, and never a regression of a COMPLETED result.
import { describe, expect, it } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { sql } from 'kysely';
import type { Topics } from '../src/config.js';
import { readDeadLetters } from '../src/dlt.js';
import { PermanentError } from '../src/errors.js';
import type { Scorer } from '../consumers/scorer.js';
import { kafkaBrokers, waitFor } from './helpers.js';
import { createEvaluation, createTopics, produceEvent, scorerSuite, startScorer, type Harness, completedScoreRow } from './scorer-helpers.js';

describe('redrive', () => {
  const suite = scorerSuite();

  const redriveAll = (topics: Topics) => {
    const result = spawnSync('node', ['bin/evalbox.js', 'dlt', 'redrive', '--all', '--json', '--kafka-brokers', kafkaBrokers()], {
      encoding: 'utf8',
      env: { ...process.env, EVALBOX_TOPIC_DLT: topics.dlt },
    });
    expect(result.status).toBe(0);
    return (JSON.parse(result.stdout) as { redriven: string[] }).redriven;
  };
  const scoredEvents = async (id: string) =>
    Number(
      (
        await sql<{ n: string }>`SELECT count(*) AS n FROM outbox WHERE type = 'evaluation.scored' AND payload->>'evaluationId' = ${id}`.execute(
          suite.database.db,
        )
      ).rows[0]?.n,
    );
  const redrivenRecords = async (topics: Topics) => (await readDeadLetters(kafkaBrokers(), topics.events)).filter((r) => r.headers.dlt_redriven_from);

  it('redrive is idempotent: redriving a permanently failing evaluation twice gives the same outcome, one evaluation.scored event, one DLT record, one new paid call, on the original partition', async () => {
    const topics = await createTopics(3);
    let calls = 0;
    const failing: Scorer = {
      dimension: 'toxicity',
      name: 'test-toxicity',
      version: '1',
      async score() {
        calls++;
        throw new PermanentError('the provider says no', { code: 'JUDGE_CLIENT_ERROR' });
      },
    };
    suite.harness = await startScorer(suite.database, topics, { producer: suite.producer, scorers: new Map([['toxicity', failing]]) });
    const data = await createEvaluation(suite.database, ['toxicity'], { applicationId: 'app-redrive-7' });
    await produceEvent(suite.producer, topics.events, data);
    await waitFor(async () => (await readDeadLetters(kafkaBrokers(), topics.dlt)).length === 1, { what: 'the dead letter' });
    const [original] = await readDeadLetters(kafkaBrokers(), topics.dlt);
    expect(calls).toBe(1);

    expect(redriveAll(topics)).toHaveLength(1);
    await waitFor(() => calls === 2, { what: 'the first redrive to be scored' });
    await waitFor(async () => (await redrivenRecords(topics)).length === 1, { what: 'the redriven record' });
    expect(redriveAll(topics)).toHaveLength(1);
    await waitFor(async () => (await redrivenRecords(topics)).length === 2, { what: 'the second redriven record' });
    // Let the second redrive be consumed: it is handled once the committed offset passes it.
    await waitFor(
      async () => {
        const marks = await (suite.harness as Harness).consumer.watermarks();
        return marks.every((m) => m.committed === undefined || m.committed === m.high) && marks.some((m) => m.committed === m.high && m.high >= 3);
      },
      { what: 'the second redrive to be consumed', timeoutMs: 20_000 },
    );
    expect(calls).toBe(2);
    expect(await scoredEvents(data.evaluationId)).toBe(1);
    expect(await readDeadLetters(kafkaBrokers(), topics.dlt)).toHaveLength(1);
    const status = await suite.database.db.selectFrom('evaluations').select('status').where('id', '=', data.evaluationId).executeTakeFirstOrThrow();
    expect(status.status).toBe('SCORING_FAILED');
    for (const record of await redrivenRecords(topics)) expect(String(record.partition)).toBe(original?.headers.dlt_original_partition);
  });

  it('a redrive after a scorer version bump never turns a COMPLETED row into ERROR', async () => {
    const topics = await createTopics(1);
    let healthy = false;
    const steady: Scorer = { dimension: 'toxicity', name: 'test-toxicity', version: '1', score: async () => completedScoreRow('toxicity') };
    const flaky: Scorer = {
      dimension: 'pii_leak',
      name: 'test-pii_leak',
      version: '1',
      async score() {
        if (!healthy) throw new PermanentError('down', { code: 'JUDGE_CLIENT_ERROR' });
        return completedScoreRow('pii_leak');
      },
    };
    suite.harness = await startScorer(suite.database, topics, {
      producer: suite.producer,
      scorers: new Map([
        ['toxicity', steady],
        ['pii_leak', flaky],
      ]),
    });
    const data = await createEvaluation(suite.database, ['toxicity', 'pii_leak']);
    await produceEvent(suite.producer, topics.events, data);
    const statusOf = async () =>
      (await suite.database.db.selectFrom('evaluations').select('status').where('id', '=', data.evaluationId).executeTakeFirstOrThrow()).status;
    await waitFor(async () => (await statusOf()) === 'PARTIALLY_SCORED', { what: 'PARTIALLY_SCORED' });
    await suite.harness.stop();
    // Version 2 of the toxicity scorer fails; pii_leak has recovered.
    healthy = true;
    const bumped: Scorer = {
      dimension: 'toxicity',
      name: 'test-toxicity',
      version: '2',
      async score() {
        throw new PermanentError('v2 is broken', { code: 'SCORER_FAILED' });
      },
    };
    suite.harness = await startScorer(suite.database, topics, {
      producer: suite.producer,
      scorers: new Map([
        ['toxicity', bumped],
        ['pii_leak', flaky],
      ]),
    });
    redriveAll(topics);
    await waitFor(async () => (await statusOf()) === 'SCORED', { what: 'SCORED after the redrive', timeoutMs: 20_000 });
    const rows = await suite.database.db
      .selectFrom('scores')
      .select(['dimension', 'status', 'scorer_version'])
      .where('evaluation_id', '=', data.evaluationId)
      .execute();
    expect(rows.sort((a, b) => a.dimension.localeCompare(b.dimension))).toEqual([
      { dimension: 'pii_leak', status: 'COMPLETED', scorer_version: '1' },
      { dimension: 'toxicity', status: 'COMPLETED', scorer_version: '1' },
    ]);
    expect(await scoredEvents(data.evaluationId)).toBe(2); // the corrected result is announced once
  });
});
