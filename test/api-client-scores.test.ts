// Client and human scores: POST /v1/evaluations/{id}/scores upserts on (evaluation, dimension),
// is forwarded through the outbox as evaluation.client_scored on the results topic, never
// touches a row evalbox's scorers own, and sees nothing of another application.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { sql } from 'kysely';
import { EVENT_TYPES } from '../src/events.js';
import { evaluationClientScoredSchema } from '../src/schemas/events.js';
import { createAjv } from '../src/schemas/validator.js';
import { createApiFixture, validEvaluation, type ApiFixture } from './api-helpers.js';

interface Score {
  dimension: string;
  value: number | null;
  label: string | null;
  source: string;
  scorerName: string;
  reasoning: string | null;
}

describe('POST /v1/evaluations/{id}/scores', () => {
  let f: ApiFixture;
  beforeAll(async () => {
    f = await createApiFixture();
  });
  afterAll(async () => f.database.drop());

  const create = async (key?: string) =>
    ((await (await f.post('/v1/evaluations', validEvaluation({ dimensions: ['toxicity'] }), key)).json()) as { evaluationId: string }).evaluationId;
  const outboxOf = async (evaluationId: string) =>
    (
      await sql<{ topic: string; key: string; type: string; payload: Record<string, unknown> }>`
        SELECT topic, key, type, payload FROM outbox WHERE payload->>'evaluationId' = ${evaluationId} ORDER BY xid, seq`.execute(f.database.db)
    ).rows;

  it('client and human scores are upserted on (evaluation, dimension), shown by GET, and forwarded through the outbox as evaluation.client_scored on the results topic', async () => {
    const id = await create();
    const first = await f.post(`/v1/evaluations/${id}/scores`, {
      scores: [
        { dimension: 'thumbs', source: 'HUMAN', value: 1, label: 'up', scorerName: 'reviewer-17', reasoning: 'correct and short' },
        { dimension: 'client_bleu', source: 'CLIENT', value: 0.42 },
      ],
    });
    expect(first.status).toBe(200);
    const body = (await first.json()) as { evaluationId: string; scores: Score[] };
    expect(body.scores.map((s) => [s.dimension, s.source, s.value, s.scorerName])).toEqual([
      ['client_bleu', 'CLIENT', 0.42, 'client'],
      ['thumbs', 'HUMAN', 1, 'reviewer-17'],
    ]);
    // The reviewer changes their mind: the same (evaluation, dimension) row is updated.
    const second = await f.post(`/v1/evaluations/${id}/scores`, {
      scores: [{ dimension: 'thumbs', source: 'HUMAN', value: 0, label: 'down', scorerName: 'reviewer-17' }],
    });
    expect(second.status).toBe(200);
    const { rows } = await sql<{ n: string }>`SELECT count(*) AS n FROM scores WHERE evaluation_id = ${id} AND dimension = 'thumbs'`.execute(f.database.db);
    expect(rows[0]?.n).toBe('1');
    const shown = (await (await f.get(`/v1/evaluations/${id}`)).json()) as { scores: Score[] };
    expect(shown.scores.find((s) => s.dimension === 'thumbs')).toMatchObject({ value: 0, label: 'down', source: 'HUMAN', reasoning: null });

    const events = (await outboxOf(id)).filter((e) => e.type === EVENT_TYPES.evaluationClientScored);
    expect(events).toHaveLength(2);
    const validate = createAjv().compile(evaluationClientScoredSchema);
    for (const event of events) {
      expect(event.topic).toBe('llm-evaluation-scores');
      expect(event.key).toBe('app-a');
      expect(validate(event.payload)).toBe(true);
    }
    expect((events[1]?.payload.scores as Score[]).map((s) => [s.dimension, s.value, s.label])).toEqual([['thumbs', 0, 'down']]);
  });

  it('tenant isolation: another application’s key gets 404 for the evaluation and writes no score and no event', async () => {
    const id = await create();
    const res = await f.post(`/v1/evaluations/${id}/scores`, { scores: [{ dimension: 'thumbs', source: 'HUMAN', value: 1 }] }, f.keyB);
    expect(res.status).toBe(404);
    const { rows } = await sql<{ n: string }>`SELECT count(*) AS n FROM scores WHERE evaluation_id = ${id}`.execute(f.database.db);
    expect(rows[0]?.n).toBe('0');
    expect((await outboxOf(id)).map((e) => e.type)).toEqual([EVENT_TYPES.evaluationCreated]);
    // An unknown or malformed id is a 404 too.
    expect(
      (await f.post(`/v1/evaluations/00000000-0000-7000-8000-00000000abcd/scores`, { scores: [{ dimension: 'x', source: 'CLIENT', value: 1 }] })).status,
    ).toBe(404);
    expect((await f.post(`/v1/evaluations/nope/scores`, { scores: [{ dimension: 'x', source: 'CLIENT', value: 1 }] })).status).toBe(404);
  });

  it('a dimension evalbox scores for the evaluation is refused with 409, and a scorer’s row is never overwritten', async () => {
    const id = await create();
    const requested = await f.post(`/v1/evaluations/${id}/scores`, { scores: [{ dimension: 'toxicity', source: 'HUMAN', value: 0 }] });
    expect(requested.status).toBe(409);
    // A scorer row for a dimension the evaluation did not request (written by an older version, say).
    await sql`
      INSERT INTO scores (evaluation_id, dimension, value, source, scorer_name, scorer_version, status)
      VALUES (${id}, 'pii_leak', 0.9, 'HEURISTIC', 'pii', '3', 'COMPLETED')`.execute(f.database.db);
    const clash = await f.post(`/v1/evaluations/${id}/scores`, {
      scores: [
        { dimension: 'pii_leak', source: 'CLIENT', value: 0.1 },
        { dimension: 'fine', source: 'CLIENT', value: 0.5 },
      ],
    });
    expect(clash.status).toBe(409);
    const { rows } = await sql<{ dimension: string; value: number; source: string }>`
      SELECT dimension, value, source FROM scores WHERE evaluation_id = ${id} ORDER BY dimension`.execute(f.database.db);
    // Refused as a whole: neither the scorer's row changed nor the other score written.
    expect(rows).toEqual([{ dimension: 'pii_leak', value: 0.9, source: 'HEURISTIC' }]);
    expect((await outboxOf(id)).map((e) => e.type)).toEqual([EVENT_TYPES.evaluationCreated]);
  });

  it('scores are validated: source HUMAN or CLIENT, a value in 0..1 or a label, no unknown fields, no NUL', async () => {
    const id = await create();
    for (const bad of [
      { scores: [] },
      { scores: [{ dimension: 'thumbs', source: 'LLM_JUDGE', value: 1 }] },
      { scores: [{ dimension: 'thumbs', source: 'HUMAN', value: 1.5 }] },
      { scores: [{ dimension: 'thumbs', source: 'HUMAN' }] },
      { scores: [{ dimension: 'Thumbs Up', source: 'HUMAN', value: 1 }] },
      { scores: [{ dimension: 'thumbs', source: 'HUMAN', value: 1, status: 'ERROR' }] },
      { scores: [{ dimension: 'thumbs', source: 'HUMAN', label: 'a\u0000b' }] },
    ]) {
      const res = await f.post(`/v1/evaluations/${id}/scores`, bad);
      expect([JSON.stringify(bad), res.status]).toEqual([JSON.stringify(bad), 400]);
    }
    expect((await outboxOf(id)).map((e) => e.type)).toEqual([EVENT_TYPES.evaluationCreated]);
  });
});
