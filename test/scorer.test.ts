// The scoring consumer in-process against the real Postgres and Kafka: exactly-once effects,
// key-level parallelism, poison and exhausted work on the DLT, redrive.
import { describe, expect, it } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import { readDeadLetters } from '../src/dlt.js';
import { RetryableError } from '../src/errors.js';
import { createIdempotentProducer, createKafka } from '../src/kafka.js';
import type { Scorer, ScoreRow } from '../consumers/scorer.js';
import { kafkaBrokers, waitFor } from './helpers.js';
import { createEvaluation, createTopics, produceEvent, startScorer, scorerSuite } from './scorer-helpers.js';

const row = (dimension: string, value = 0.5): ScoreRow => ({
  dimension,
  status: 'COMPLETED',
  value,
  label: 'ok',
  raw_value: value,
  direction: 'higher_is_better',
  reasoning: 'test',
  source: 'HEURISTIC',
  scorer_name: `test-${dimension}`,
  scorer_version: '1',
  error_code: null,
});

function testScorer(dimension: string, score: Scorer['score']): Scorer {
  return { dimension, name: `test-${dimension}`, version: '1', score };
}

describe('scoring consumer', () => {
  const suite = scorerSuite({ max: 30 });

  const scoredEvents = async (evaluationId: string) =>
    Number(
      (
        await sql<{ n: string }>`SELECT count(*) AS n FROM outbox WHERE type = 'evaluation.scored' AND payload->>'evaluationId' = ${evaluationId}`.execute(
          suite.database.db,
        )
      ).rows[0]?.n,
    );
  const evaluationStatus = async (id: string) =>
    (await suite.database.db.selectFrom('evaluations').select('status').where('id', '=', id).executeTakeFirstOrThrow()).status;

  it('scores every requested dimension and forwards evaluation.scored through the outbox in the same transaction', async () => {
    const topics = await createTopics();
    suite.harness = await startScorer(suite.database, topics, { producer: suite.producer });
    const data = await createEvaluation(suite.database, ['groundedness', 'answer_relevance', 'pii_leak', 'toxicity']);
    await produceEvent(suite.producer, topics.events, data);
    await waitFor(async () => (await evaluationStatus(data.evaluationId)) === 'SCORED', { what: 'SCORED' });
    const scores = await suite.database.db.selectFrom('scores').selectAll().where('evaluation_id', '=', data.evaluationId).execute();
    expect(scores.map((s) => [s.dimension, s.status]).sort()).toEqual([
      ['answer_relevance', 'COMPLETED'],
      ['groundedness', 'COMPLETED'],
      ['pii_leak', 'COMPLETED'],
      ['toxicity', 'COMPLETED'],
    ]);
    const event = await suite.database.db
      .selectFrom('outbox')
      .selectAll()
      .where('type', '=', 'evaluation.scored')
      .where(sql<boolean>`payload->>'evaluationId' = ${data.evaluationId}`)
      .executeTakeFirstOrThrow();
    expect(event).toMatchObject({ topic: topics.scores, key: 'app-1', source: '/evalbox/scorer' });
    expect(event.payload).toMatchObject({
      status: 'SCORED',
      evaluationId: data.evaluationId,
      scores: expect.arrayContaining([expect.objectContaining({ dimension: 'groundedness', status: 'COMPLETED', value: 1 })]),
    });
    // The scores, the status and the event were written by one transaction.
    const xids = await sql<{
      n: string;
    }>`SELECT count(DISTINCT x) AS n FROM (SELECT xmin::text AS x FROM evaluations WHERE id = ${data.evaluationId} UNION ALL SELECT xid::text FROM outbox WHERE type = 'evaluation.scored' AND payload->>'evaluationId' = ${data.evaluationId}) t`.execute(
      suite.database.db,
    );
    expect(Number(xids.rows[0]?.n)).toBe(1);
  });

  it('guarantee 4: a redelivered event creates no second score row, no second evaluation.scored event and no second scorer call', async () => {
    const topics = await createTopics();
    let calls = 0;
    suite.harness = await startScorer(suite.database, topics, {
      producer: suite.producer,
      scorers: new Map([['toxicity', testScorer('toxicity', async () => (calls++, row('toxicity')))]]),
    });
    let redeliveries = 0;
    suite.harness.events.on('scorer:redelivery', () => redeliveries++);
    const data = await createEvaluation(suite.database, ['toxicity', 'pii_leak']);
    await produceEvent(suite.producer, topics.events, data, 'same-event-id');
    await waitFor(async () => (await evaluationStatus(data.evaluationId)) === 'SCORED', { what: 'SCORED' });
    await produceEvent(suite.producer, topics.events, data, 'same-event-id');
    await waitFor(() => redeliveries === 1, { what: 'the redelivery to be handled' });
    // A second consumer group reading from the beginning is an offset reset.
    await suite.harness.stop();
    suite.harness = await startScorer(suite.database, topics, {
      producer: suite.producer,
      scorers: new Map([['toxicity', testScorer('toxicity', async () => (calls++, row('toxicity')))]]),
    });
    suite.harness.events.on('scorer:redelivery', () => redeliveries++);
    await waitFor(() => redeliveries === 3, { what: 'both redeliveries after the reset' });
    expect(calls).toBe(1);
    expect(await suite.database.db.selectFrom('scores').select('dimension').where('evaluation_id', '=', data.evaluationId).execute()).toHaveLength(2);
    expect(await scoredEvents(data.evaluationId)).toBe(1);
  });

  it('guarantee 4: a second delivery while the first is still in flight (an offset reset beside the running group) writes one row per dimension and one evaluation.scored event', async () => {
    const topics = await createTopics();
    // A slow scorer: each delivery waits inside score() until both are in flight at once.
    let inside = 0;
    let bothInside!: () => void;
    const barrier = new Promise<void>((resolve) => (bothInside = resolve));
    const slow = () =>
      new Map([
        [
          'toxicity',
          testScorer('toxicity', async () => {
            if (++inside === 2) bothInside();
            await barrier;
            return row('toxicity', 0.25);
          }),
        ],
      ]);
    suite.harness = await startScorer(suite.database, topics, { producer: suite.producer, scorers: slow() });
    const second = await startScorer(suite.database, topics, { producer: suite.producer, scorers: slow() });
    let processed = 0;
    for (const h of [suite.harness, second]) h.consumer.events.on('consumer:processed', () => processed++);
    try {
      const data = await createEvaluation(suite.database, ['toxicity', 'pii_leak']);
      await produceEvent(suite.producer, topics.events, data, 'same-event-id');
      await waitFor(() => inside === 2, { what: 'both deliveries in flight at once', timeoutMs: 60_000 });
      // Both deliveries have finished (each completes its offset after its commit).
      await waitFor(() => processed === 2, { what: 'both deliveries handled' });
      expect(await evaluationStatus(data.evaluationId)).toBe('SCORED');
      const rows = await suite.database.db.selectFrom('scores').select(['dimension', 'attempts']).where('evaluation_id', '=', data.evaluationId).execute();
      expect(rows.map((r) => r.dimension).sort()).toEqual(['pii_leak', 'toxicity']);
      expect(await scoredEvents(data.evaluationId)).toBe(1);
    } finally {
      await second.stop();
    }
  });

  it('runs different evaluations of one application in parallel within one partition, and one evaluation’s events strictly in order', async () => {
    const topics = await createTopics(1);
    const running = new Map<string, number>();
    let overlaps = 0;
    suite.harness = await startScorer(suite.database, topics, {
      producer: suite.producer,
      scorers: new Map([
        [
          'toxicity',
          testScorer('toxicity', async (_inputs, { evaluationId }) => {
            running.set(evaluationId, (running.get(evaluationId) ?? 0) + 1);
            if ((running.get(evaluationId) ?? 0) > 1) overlaps++;
            await new Promise((r) => setTimeout(r, 200));
            running.set(evaluationId, (running.get(evaluationId) ?? 1) - 1);
            return row('toxicity');
          }),
        ],
      ]),
    });
    const evaluations = await Promise.all(Array.from({ length: 20 }, () => createEvaluation(suite.database, ['toxicity'])));
    const started = Date.now();
    for (const data of evaluations) await produceEvent(suite.producer, topics.events, data);
    // The same evaluation twice, back to back: the second must wait for the first.
    await produceEvent(suite.producer, topics.events, evaluations[0]!);
    await waitFor(
      async () => {
        const rows = await suite.database.db
          .selectFrom('evaluations')
          .select('id')
          .where(
            'id',
            'in',
            evaluations.map((e) => e.evaluationId),
          )
          .where('status', '=', 'SCORED')
          .execute();
        return rows.length === 20;
      },
      { what: '20 evaluations scored', timeoutMs: 30_000 },
    );
    const elapsed = Date.now() - started;
    // Serially this takes 20 × 200 ms = 4 s.
    expect(elapsed).toBeLessThan(2_000);
    expect(overlaps).toBe(0);
  });

  it('guarantee 5: a poison event goes straight to the DLT and does not block its partition', async () => {
    const topics = await createTopics(1);
    suite.harness = await startScorer(suite.database, topics, { producer: suite.producer });
    await produceEvent(suite.producer, topics.events, '{"this is": not json');
    await produceEvent(suite.producer, topics.events, JSON.stringify({ schemaVersion: 1, evaluationId: 'not-a-uuid' }));
    const good = await createEvaluation(suite.database, ['toxicity']);
    await produceEvent(suite.producer, topics.events, good);
    await waitFor(async () => (await evaluationStatus(good.evaluationId)) === 'SCORED', { what: 'the good evaluation' });
    const dead = await waitFor(
      async () => {
        const records = await readDeadLetters(kafkaBrokers(), topics.dlt);
        return records.length >= 2 ? records : undefined;
      },
      { what: 'two dead letters' },
    );
    expect(dead.map((d) => d.headers.dlt_error_code)).toEqual(['INVALID_EVENT', 'INVALID_EVENT']);
    expect(dead[0]).toMatchObject({
      key: 'app-1',
      headers: expect.objectContaining({
        dlt_original_topic: topics.events,
        dlt_original_partition: '0',
        dlt_original_offset: '0',
        dlt_attempts: '1',
        ce_type: 'evaluation.created',
      }),
    });
    expect(dead[0]?.value?.toString()).toBe('{"this is": not json');
    expect(new Date(dead[0]?.headers.dlt_failed_at ?? '').getTime()).toBeGreaterThan(0);
  });

  it('guarantee 5: a poison event near the 1 MB limit, whose DLT record (value plus failure headers) is larger than the producer takes, is dead-lettered without its value and does not block its partition', async () => {
    const topics = await createTopics(1);
    suite.harness = await startScorer(suite.database, topics, { producer: suite.producer });
    // Valid JSON that fails the schema, 1,040,000 incompressible bytes: the broker takes it (its
    // limit is 1,048,588), the DLT producer does not (1,000,000), and with the failure headers
    // the broker would not either.
    const big = JSON.stringify({ schemaVersion: 1, padding: randomBytes(780_000).toString('base64') });
    expect(big.length).toBeGreaterThan(1_030_000);
    const bigProducer = createIdempotentProducer(createKafka(kafkaBrokers(), 'evalbox-test-big-producer'), { 'message.max.bytes': 1_048_588 });
    await bigProducer.connect();
    try {
      await produceEvent(bigProducer, topics.events, big);
    } finally {
      await bigProducer.disconnect();
    }
    const good = await createEvaluation(suite.database, ['toxicity']);
    await produceEvent(suite.producer, topics.events, good);
    await waitFor(async () => (await evaluationStatus(good.evaluationId)) === 'SCORED', { what: 'the evaluation behind the large poison' });
    const [dead] = await waitFor(
      async () => {
        const records = await readDeadLetters(kafkaBrokers(), topics.dlt);
        return records.length >= 1 ? records : undefined;
      },
      { what: 'the dead letter' },
    );
    expect(dead?.value).toBeNull();
    expect(dead?.headers).toMatchObject({ dlt_error_code: 'INVALID_EVENT', dlt_original_offset: '0', ce_type: 'evaluation.created' });
    expect(dead?.headers.dlt_value_omitted).toMatch(/: 10\d{5} bytes$/);
  });

  it('a retryable failure recovers without the DLT', async () => {
    const topics = await createTopics();
    let calls = 0;
    suite.harness = await startScorer(suite.database, topics, {
      producer: suite.producer,
      scorers: new Map([
        [
          'toxicity',
          testScorer('toxicity', async () => {
            calls++;
            if (calls < 3) throw new RetryableError('provider 503', { code: 'JUDGE_SERVER_ERROR' });
            return row('toxicity');
          }),
        ],
      ]),
    });
    const data = await createEvaluation(suite.database, ['toxicity']);
    await produceEvent(suite.producer, topics.events, data);
    await waitFor(async () => (await evaluationStatus(data.evaluationId)) === 'SCORED', { what: 'SCORED' });
    expect(
      await suite.database.db.selectFrom('scores').select(['status', 'attempts']).where('evaluation_id', '=', data.evaluationId).executeTakeFirst(),
    ).toEqual({
      status: 'COMPLETED',
      attempts: 3,
    });
    expect(await readDeadLetters(kafkaBrokers(), topics.dlt)).toEqual([]);
  });

  it('guarantee 3: exhausted retries end as ERROR rows, a terminal status and a DLT record; redrive then completes it', async () => {
    const topics = await createTopics();
    let healthy = false;
    const flaky = testScorer('toxicity', async () => {
      if (!healthy) throw new RetryableError('provider down', { code: 'JUDGE_SERVER_ERROR' });
      return row('toxicity', 0.1);
    });
    suite.harness = await startScorer(suite.database, topics, { producer: suite.producer, maxAttempts: 3, scorers: new Map([['toxicity', flaky]]) });
    const data = await createEvaluation(suite.database, ['toxicity', 'pii_leak']);
    await produceEvent(suite.producer, topics.events, data);
    await waitFor(async () => (await evaluationStatus(data.evaluationId)) === 'PARTIALLY_SCORED', { what: 'PARTIALLY_SCORED' });
    const error = await suite.database.db
      .selectFrom('scores')
      .select(['status', 'error_code', 'attempts'])
      .where('evaluation_id', '=', data.evaluationId)
      .where('dimension', '=', 'toxicity')
      .executeTakeFirst();
    expect(error).toEqual({ status: 'ERROR', error_code: 'JUDGE_SERVER_ERROR', attempts: 3 });
    const [dead] = await readDeadLetters(kafkaBrokers(), topics.dlt);
    expect(dead?.headers).toMatchObject({
      dlt_error_code: 'JUDGE_SERVER_ERROR',
      dlt_error_class: 'RetryableError',
      dlt_dimension: 'toxicity',
      dlt_attempts: '3',
      dlt_consumer_group: expect.any(String),
    });
    expect(await scoredEvents(data.evaluationId)).toBe(1);

    healthy = true;
    const redrive = spawnSync('node', ['bin/evalbox.js', 'dlt', 'redrive', '--all', '--json', '--kafka-brokers', kafkaBrokers()], {
      encoding: 'utf8',
      env: { ...process.env, EVALBOX_TOPIC_DLT: topics.dlt },
    });
    expect(redrive.status).toBe(0);
    expect((JSON.parse(redrive.stdout) as { redriven: unknown[] }).redriven).toHaveLength(1);
    await waitFor(async () => (await evaluationStatus(data.evaluationId)) === 'SCORED', { what: 'SCORED after the redrive' });
    expect(
      await suite.database.db
        .selectFrom('scores')
        .select(['status', 'value'])
        .where('evaluation_id', '=', data.evaluationId)
        .where('dimension', '=', 'toxicity')
        .executeTakeFirst(),
    ).toEqual({ status: 'COMPLETED', value: 0.1 });
    expect(await scoredEvents(data.evaluationId)).toBe(2); // the corrected result is announced again
  });

  it('an event for an unknown evaluation goes to the DLT as UNKNOWN_EVALUATION; dlt list and show find it', async () => {
    const topics = await createTopics();
    suite.harness = await startScorer(suite.database, topics, { producer: suite.producer });
    const data = await createEvaluation(suite.database, ['toxicity']);
    await suite.database.db.deleteFrom('evaluations').where('id', '=', data.evaluationId).execute();
    await produceEvent(suite.producer, topics.events, data);
    const [dead] = await waitFor(
      async () => {
        const records = await readDeadLetters(kafkaBrokers(), topics.dlt);
        return records.length ? records : undefined;
      },
      { what: 'the dead letter' },
    );
    expect(dead?.headers.dlt_error_code).toBe('UNKNOWN_EVALUATION');
    const env = { ...process.env, EVALBOX_TOPIC_DLT: topics.dlt };
    const list = spawnSync('node', ['bin/evalbox.js', 'dlt', 'list', '--json'], { encoding: 'utf8', env });
    expect(JSON.parse(list.stdout)).toEqual([expect.objectContaining({ ref: dead?.ref, error_code: 'UNKNOWN_EVALUATION' })]);
    const show = spawnSync('node', ['bin/evalbox.js', 'dlt', 'show', dead?.ref ?? ''], { encoding: 'utf8', env });
    expect(JSON.parse(show.stdout)).toMatchObject({ value: { evaluationId: data.evaluationId }, headers: { dlt_error_code: 'UNKNOWN_EVALUATION' } });
  });
});
