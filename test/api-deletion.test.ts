// Deletion: DELETE /v1/evaluations/{id} removes the evaluation and its scores, leaves a tombstone
// without content, and publishes evaluation.deleted on both topics in the same transaction; a
// scorer finishing at the same moment neither resurrects the evaluation nor fails, and a scorer
// meeting the event of an evaluation deleted before it was scored dead-letters nothing.
import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import { sql } from 'kysely';
import { createScoreStore } from '../consumers/score-store.js';
import { readDeadLetters } from '../src/dlt.js';
import { EVENT_TYPES } from '../src/events.js';
import type { Producer } from '../src/kafka.js';
import { evaluationDeletedSchema } from '../src/schemas/events.js';
import { createAjv } from '../src/schemas/validator.js';
import { createApiFixture, validEvaluation, type ApiFixture } from './api-helpers.js';
import { kafkaBrokers, waitFor } from './helpers.js';
import { createEvaluation, createTopics, produceEvent, startScorer, testProducer, type Harness } from './scorer-helpers.js';

const TOPICS = { events: 'llm-evaluation-events', scores: 'llm-evaluation-scores', dlt: 'llm-evaluation-events.DLT' };

describe('DELETE /v1/evaluations/{id}', () => {
  let f: ApiFixture;
  let producer: Producer | undefined;
  let harness: Harness | undefined;
  beforeAll(async () => {
    f = await createApiFixture();
  });
  afterEach(async () => {
    await harness?.stop();
    harness = undefined;
  });
  afterAll(async () => {
    await producer?.disconnect();
    await f.database.drop();
  });

  const create = async (key?: string) =>
    ((await (await f.post('/v1/evaluations', validEvaluation({ dimensions: ['toxicity'] }), key)).json()) as { evaluationId: string }).evaluationId;
  const del = async (id: string, key = f.keyA) => f.app.request(`/v1/evaluations/${id}`, { method: 'DELETE', headers: { authorization: `Bearer ${key}` } });
  const count = async (table: 'evaluations' | 'scores', id: string) =>
    Number(
      (
        await sql<{
          n: string;
        }>`SELECT count(*) AS n FROM ${sql.table(table)} WHERE ${sql.ref(table === 'evaluations' ? 'id' : 'evaluation_id')} = ${id}`.execute(f.database.db)
      ).rows[0]?.n,
    );
  const outboxOf = async (id: string) =>
    (
      await sql<{ topic: string; type: string; payload: Record<string, unknown> }>`
        SELECT topic, type, payload FROM outbox WHERE payload->>'evaluationId' = ${id} ORDER BY xid, seq`.execute(f.database.db)
    ).rows;
  const scorerRow = (id: string) => ({
    evaluationId: id,
    applicationId: 'app-a',
    redriven: false,
    rows: [
      {
        row: {
          dimension: 'toxicity',
          status: 'COMPLETED' as const,
          value: 0.1,
          label: null,
          raw_value: null,
          direction: 'lower_is_better' as const,
          reasoning: null,
          source: 'HEURISTIC' as const,
          scorer_name: 'toxicity',
          scorer_version: '1',
          error_code: null,
        },
        attempts: 1,
      },
    ],
  });

  it('deletion removes the evaluation and its scores, keeps a tombstone without content, and publishes evaluation.deleted on both topics in the same transaction', async () => {
    const id = await create();
    expect((await f.post(`/v1/evaluations/${id}/scores`, { scores: [{ dimension: 'thumbs', source: 'HUMAN', value: 1 }] })).status).toBe(200);
    await createScoreStore(f.database.db, TOPICS).commit(scorerRow(id));
    expect(await count('scores', id)).toBe(2);

    const res = await del(id);
    expect(res.status).toBe(204);
    expect(await count('evaluations', id)).toBe(0);
    expect(await count('scores', id)).toBe(0);
    expect((await f.get(`/v1/evaluations/${id}`)).status).toBe(404);
    const { rows: tombstone } = await sql`SELECT * FROM evaluation_deletions WHERE evaluation_id = ${id}`.execute(f.database.db);
    expect(tombstone).toEqual([{ evaluation_id: id, application_id: 'app-a', deleted_at: expect.any(Date) }]);

    const events = await outboxOf(id);
    expect(events.map((e) => [e.type, e.topic])).toEqual([
      [EVENT_TYPES.evaluationCreated, TOPICS.events],
      [EVENT_TYPES.evaluationClientScored, TOPICS.scores],
      [EVENT_TYPES.evaluationScored, TOPICS.scores],
      [EVENT_TYPES.evaluationDeleted, TOPICS.events],
      [EVENT_TYPES.evaluationDeleted, TOPICS.scores],
    ]);
    const validate = createAjv().compile(evaluationDeletedSchema);
    for (const e of events.filter((e) => e.type === EVENT_TYPES.evaluationDeleted)) expect(validate(e.payload)).toBe(true);
    // Deleting again finds nothing.
    expect((await del(id)).status).toBe(404);
  });

  it('tenant isolation: another application’s key gets 404 and deletes nothing', async () => {
    const id = await create();
    expect((await del(id, f.keyB)).status).toBe(404);
    expect(await count('evaluations', id)).toBe(1);
    expect((await outboxOf(id)).map((e) => e.type)).toEqual([EVENT_TYPES.evaluationCreated]);
    expect((await del('not-a-uuid')).status).toBe(404);
  });

  it('deletion while a scorer commits: the deletion waits for the scorer’s row lock and removes what it wrote; the scored event precedes the deleted one', async () => {
    const id = await create();
    // The scorer's final write, held open: it has locked the row and written its rows and event.
    const scorer = await f.database.pool.connect();
    try {
      await scorer.query('BEGIN');
      await scorer.query('SELECT id FROM evaluations WHERE id = $1 FOR UPDATE', [id]);
      await scorer.query(
        `INSERT INTO scores (evaluation_id, dimension, value, source, scorer_name, scorer_version, status) VALUES ($1, 'toxicity', 0.1, 'HEURISTIC', 'toxicity', '1', 'COMPLETED')`,
        [id],
      );
      await scorer.query(`UPDATE evaluations SET status = 'SCORED', scored_at = now() WHERE id = $1`, [id]);
      await scorer.query(
        `INSERT INTO outbox (id, shard, topic, key, type, source, payload) VALUES (gen_random_uuid(), 0, $2, 'app-a', 'evaluation.scored', '/evalbox/scorer', jsonb_build_object('evaluationId', $1::text))`,
        [id, TOPICS.scores],
      );
      let settled = false;
      const deleting = del(id).then((r) => {
        settled = true;
        return r;
      });
      // The deletion is blocked on the lock while the scorer's transaction is open.
      await waitFor(
        async () =>
          (
            await sql<{
              n: string;
            }>`SELECT count(*) AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'delete from "evaluations"%'`.execute(f.database.db)
          ).rows[0]?.n === '1',
        { what: 'the DELETE to wait for the row lock' },
      );
      expect(settled).toBe(false);
      await scorer.query('COMMIT');
      expect((await deleting).status).toBe(204);
    } finally {
      scorer.release();
    }
    expect(await count('evaluations', id)).toBe(0);
    expect(await count('scores', id)).toBe(0);
    expect((await outboxOf(id)).map((e) => e.type)).toEqual([
      EVENT_TYPES.evaluationCreated,
      EVENT_TYPES.evaluationScored,
      EVENT_TYPES.evaluationDeleted,
      EVENT_TYPES.evaluationDeleted,
    ]);
  });

  it('a scorer that finishes after the deletion neither resurrects the evaluation nor fails: it writes no score and no event', async () => {
    const id = await create();
    expect((await del(id)).status).toBe(204);
    // The real score store, as the scorer calls it after scoring an evaluation it loaded earlier.
    const status = await createScoreStore(f.database.db, TOPICS).commit(scorerRow(id));
    expect(status).toBeUndefined();
    expect(await count('evaluations', id)).toBe(0);
    expect(await count('scores', id)).toBe(0);
    expect((await outboxOf(id)).map((e) => e.type)).toEqual([EVENT_TYPES.evaluationCreated, EVENT_TYPES.evaluationDeleted, EVENT_TYPES.evaluationDeleted]);
  });

  it('a scorer meeting the event of an evaluation deleted before it was scored dead-letters nothing (a DLT record would keep the deleted text)', async () => {
    const topics = await createTopics();
    producer = await testProducer();
    harness = await startScorer(f.database, topics, { producer });
    const data = await createEvaluation(f.database, ['toxicity'], { applicationId: 'app-a' });
    expect((await del(data.evaluationId)).status).toBe(204);
    // A control evaluation behind it on the same partition: once it is scored, the deleted one was handled.
    const control = await createEvaluation(f.database, ['toxicity'], { applicationId: 'app-a' });
    await produceEvent(producer, topics.events, data);
    await produceEvent(producer, topics.events, control);
    await waitFor(
      async () =>
        (await f.database.db.selectFrom('evaluations').select('status').where('id', '=', control.evaluationId).executeTakeFirst())?.status === 'SCORED',
      {
        what: 'the control evaluation to be scored',
      },
    );
    // Stopping drains the work in flight, so the deleted evaluation's message has been handled.
    await harness.stop();
    harness = undefined;
    expect(await readDeadLetters(kafkaBrokers(), topics.dlt)).toEqual([]);
    expect(await count('evaluations', data.evaluationId)).toBe(0);
  });
});
