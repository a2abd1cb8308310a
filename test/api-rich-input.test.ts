// Richer input: chat messages with tool calls as the prompt, tags, session and user ids, and the
// token usage, latency and cost of the call being judged — all optional, validated, stored,
// returned by GET and carried in evaluation.created as optional fields (old consumers unaffected).
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { sql } from 'kysely';
import { prepareEvaluation } from '../src/api/evaluations.js';
import type { EvaluationRequest } from '../src/schemas/evaluation-request.js';
import { evaluationCreatedSchema, readEventSchema } from '../src/schemas/events.js';
import { createAjv } from '../src/schemas/validator.js';
import { createApiFixture, validEvaluation, type ApiFixture } from './api-helpers.js';

const MESSAGES = [
  { role: 'system', content: 'You are a travel assistant.' },
  { role: 'user', content: 'What is the weather in Paris?' },
  {
    role: 'assistant',
    content: null,
    toolCalls: [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }],
  },
  { role: 'tool', toolCallId: 'call_1', name: 'get_weather', content: '{"tempC":18}' },
];

describe('richer input', () => {
  let f: ApiFixture;
  beforeAll(async () => {
    f = await createApiFixture();
  });
  afterAll(async () => f.database.drop());

  const createdEvent = async (id: string) =>
    (
      await sql<{
        payload: Record<string, unknown>;
      }>`SELECT payload FROM outbox WHERE type = 'evaluation.created' AND payload->>'evaluationId' = ${id}`.execute(f.database.db)
    ).rows[0]?.payload;

  it('richer input: messages with tool calls, tags, session and user ids, usage, latency and cost are stored, returned by GET and carried in evaluation.created', async () => {
    const rich = {
      messages: MESSAGES,
      tags: ['beta', 'weather'],
      sessionId: 'session-42',
      userId: 'user-7',
      usage: { inputTokens: 812, outputTokens: 64 },
      latencyMs: 1234.5,
      costUsd: 0.00123,
    };
    const res = await f.post('/v1/evaluations', validEvaluation({ response: 'It is 18 °C in Paris.', ...rich }));
    expect(res.status).toBe(202);
    const { evaluationId } = (await res.json()) as { evaluationId: string };
    const shown = (await (await f.get(`/v1/evaluations/${evaluationId}`)).json()) as Record<string, unknown>;
    expect(shown).toMatchObject({ ...rich, prompt: 'What is the capital of France?' });

    const event = await createdEvent(evaluationId);
    expect(event).toMatchObject(rich);
    // Valid for consumers of the current schema and of the released one alike.
    const ajv = createAjv();
    expect(ajv.compile(evaluationCreatedSchema)(event)).toBe(true);
    const released = readEventSchema('released/evaluation.created.v1.json');
    expect(ajv.compile({ ...released, $id: `${released.$id}#released` })(event)).toBe(true);
  });

  it('the evaluation.created payload the ingest statement builds in SQL is, byte for byte as the relay sends it, the event the API encodes for its size check', async () => {
    const requests: Record<string, unknown>[] = [
      validEvaluation({
        messages: MESSAGES,
        tags: ['beta'],
        sessionId: 's',
        userId: 'u',
        usage: { inputTokens: 1, outputTokens: 2 },
        latencyMs: 0.5,
        costUsd: 1e-7,
        reference: 'Paris',
        metadata: { nested: { n: null, list: [1, 'two', false, 2.5] }, é: '€' },
        dimensions: ['toxicity', 'pii_leak'],
      }),
      { prompt: 'bare', response: 'minimal', context: 'one string of context' },
      { response: 'from messages', messages: MESSAGES },
    ];
    for (const request of requests) {
      const res = await f.post('/v1/evaluations', request);
      expect(res.status).toBe(202);
      const { evaluationId } = (await res.json()) as { evaluationId: string };
      // What the evaluation row holds (not the payload under test): its application, dimensions, time and prompt.
      const row = (
        await sql<{ application_id: string; dimensions: string[]; created_at: Date; prompt: string }>`
          SELECT application_id, dimensions, created_at, prompt FROM evaluations WHERE id = ${evaluationId}`.execute(f.database.db)
      ).rows[0];
      expect(row?.application_id).toBe('app-a');
      // The same request through the JavaScript encoder, at the row's time, with the row's id put in its text.
      const prepared = prepareEvaluation({
        applicationId: 'app-a',
        request: { ...request, prompt: row?.prompt } as unknown as EvaluationRequest,
        dimensions: row?.dimensions as string[],
        idempotencyKey: undefined,
        traceparent: undefined,
        eventsTopic: 'evalbox.evaluations',
        now: row?.created_at as Date,
      });
      const expected = prepared.event.payload.replace(prepared.evaluationId, evaluationId);
      // Compared as the relay reads it (payload::text), against what the old path stored (the JS text cast to jsonb).
      const compared = (
        await sql<{ stored: string; written: string }>`
          SELECT payload::text AS stored, ${expected}::jsonb::text AS written FROM outbox
          WHERE type = 'evaluation.created' AND payload->>'evaluationId' = ${evaluationId}`.execute(f.database.db)
      ).rows[0];
      expect(compared?.stored).toBe(compared?.written);
    }
  });

  it('messages alone are the prompt: the scorers see the last user message; without a user message that has text it is a 400', async () => {
    const { prompt: _prompt, ...withoutPrompt } = validEvaluation({ messages: MESSAGES });
    const res = await f.post('/v1/evaluations', withoutPrompt);
    expect(res.status).toBe(202);
    const { evaluationId } = (await res.json()) as { evaluationId: string };
    expect(((await (await f.get(`/v1/evaluations/${evaluationId}`)).json()) as { prompt: string }).prompt).toBe('What is the weather in Paris?');
    expect((await createdEvent(evaluationId))?.prompt).toBe('What is the weather in Paris?');

    const noUser = await f.post('/v1/evaluations', { ...withoutPrompt, messages: [{ role: 'system', content: 'hi' }] });
    expect(noUser.status).toBe(400);
    expect(((await noUser.json()) as { errors: { pointer: string }[] }).errors[0]?.pointer).toBe('/messages');
    const neither = await f.post('/v1/evaluations', { response: 'r' });
    expect(neither.status).toBe(400);
  });

  it('richer input is validated: each bad field is a 400 naming it', async () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ messages: [{ role: 'robot', content: 'x' }] }, '/messages/0/role'],
      [{ messages: [{ role: 'user', content: 'x', mood: 'happy' }] }, '/messages/0/mood'],
      [{ messages: [{ role: 'assistant', toolCalls: [{ id: 'c', type: 'function' }] }] }, '/messages/0/toolCalls/0/function'],
      [{ tags: ['a', 'a'] }, '/tags'],
      [{ tags: [''] }, '/tags/0'],
      [{ sessionId: '' }, '/sessionId'],
      [{ userId: 7 }, '/userId'],
      [{ usage: { inputTokens: 1.5 } }, '/usage/inputTokens'],
      [{ usage: { tokens: 3 } }, '/usage/tokens'],
      [{ latencyMs: '12' }, '/latencyMs'],
      [{ costUsd: -1 }, '/costUsd'],
      [{ messages: [{ role: 'user', content: 'a\u0000b' }] }, '/messages/0/content'],
    ];
    for (const [fields, pointer] of cases) {
      const res = await f.post('/v1/evaluations', validEvaluation(fields));
      const body = (await res.json()) as { errors?: { pointer: string }[] };
      expect([JSON.stringify(fields), res.status, body.errors?.map((e) => e.pointer)]).toEqual([
        JSON.stringify(fields),
        400,
        expect.arrayContaining([pointer]),
      ]);
    }
  });

  it('a request without the new fields carries none of them: the event is what it was', async () => {
    const res = await f.post('/v1/evaluations', validEvaluation());
    const { evaluationId } = (await res.json()) as { evaluationId: string };
    expect(Object.keys((await createdEvent(evaluationId)) ?? {}).sort()).toEqual(
      ['applicationId', 'context', 'createdAt', 'dimensions', 'evaluationId', 'metadata', 'modelId', 'prompt', 'reference', 'response', 'schemaVersion'].sort(),
    );
    const shown = (await (await f.get(`/v1/evaluations/${evaluationId}`)).json()) as Record<string, unknown>;
    expect(shown).toMatchObject({ messages: null, tags: null, sessionId: null, userId: null, usage: null, latencyMs: null, costUsd: null });
  });
});
