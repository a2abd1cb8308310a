// One trace follows one evaluation through real processes: the API's request span, the relay's
// publish (a batch span linked to the row's trace), the scorer's span per evaluation and per
// judge call, and the evaluation.scored event's traceparent. The spans arrive at the test's own
// OTLP/HTTP receiver, the API's as JSON and the others' as protobuf (the standard OTEL_* variables
// choose), and are decoded by content type.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { sql } from 'kysely';
import { startFakeJudge, type FakeJudge } from '../src/fake-judge/server.js';
import { createApiKey } from '../src/keys.js';
import { createTestDatabase, waitFor, type TestDatabase } from './helpers.js';
import { startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from './otlp-receiver.js';
import { startPlatform, type Platform } from './platform-processes.js';
import { collectTopic } from './relay-helpers.js';

const SPAN_KIND = { server: 2, client: 3, producer: 4, consumer: 5 };

describe('tracing', () => {
  let database: TestDatabase;
  let receiver: OtlpReceiver;
  let judge: FakeJudge;
  let platform: Platform;

  beforeAll(async () => {
    database = await createTestDatabase({ max: 4 });
    receiver = await startOtlpReceiver();
    judge = await startFakeJudge();
    platform = await startPlatform(
      database,
      {
        OTEL_TRACES_EXPORTER: 'otlp',
        OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
        OTEL_BSP_SCHEDULE_DELAY: '100',
        EVALBOX_JUDGE_BASE_URL: judge.url,
        EVALBOX_JUDGE_MODEL: 'fake-judge-1',
      },
      { api: { OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json' }, relay: { OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf' } },
    );
  }, 180_000);
  afterAll(async () => {
    await platform?.stop();
    await judge?.close();
    await receiver?.close();
    await database?.drop();
  });

  it('one trace id covers POST → publish → score → judge call → evaluation.scored', async () => {
    const created = await collectTopic(platform.topics.events);
    const scored = await collectTopic(platform.topics.scores);
    try {
      const { key } = await createApiKey(database.db, 'trace-app');
      const res = await fetch(`${platform.apiUrl}/v1/evaluations`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ prompt: 'What is the capital of France?', response: 'Paris.', dimensions: ['judge_relevance', 'pii_leak'] }),
      });
      expect(res.status).toBe(202);
      const { evaluationId } = (await res.json()) as { evaluationId: string };

      await waitFor(
        async () =>
          (await sql<{ status: string }>`SELECT status FROM evaluations WHERE id = ${evaluationId}::uuid`.execute(database.db)).rows[0]?.status === 'SCORED',
        { what: 'the evaluation to be scored', timeoutMs: 60_000 },
      );
      const scoredEvent = await waitFor(() => scored.received.find((r) => r.value.includes(evaluationId)), { what: 'evaluation.scored', timeoutMs: 30_000 });
      const createdEvent = await waitFor(() => created.received.find((r) => r.value.includes(evaluationId)), { what: 'evaluation.created' });

      const byName = (name: string, service: string) => (s: ReceivedSpan) => s.name.startsWith(name) && s.service === service;
      const ingest = await waitFor(() => receiver.spans.find((s) => byName('POST /v1/evaluations', 'evalbox-api')(s)), { what: 'the ingest span' });
      const traceId = ingest.traceId;
      expect(ingest.kind).toBe(SPAN_KIND.server);
      expect(ingest.encoding).toBe('application/json');

      // The Kafka record of evaluation.created carries the ingest span's context.
      expect(createdEvent.headers.traceparent).toBe(`00-${traceId}-${ingest.spanId}-01`);

      // The relay's batch span links to the row's trace.
      const publish = await waitFor(
        () => receiver.spans.find((s) => byName('outbox publish', 'evalbox-relay')(s) && s.links.some((l) => l.traceId === traceId)),
        { what: 'the publish span linked to the trace' },
      );
      expect(publish.kind).toBe(SPAN_KIND.producer);
      expect(publish.encoding).toBe('application/x-protobuf');
      expect(publish.links).toContainEqual({ traceId, spanId: ingest.spanId });

      // The scorer continues the trace: its span's parent is the ingest span.
      const scoring = await waitFor(() => receiver.spans.find((s) => byName('evaluation score', 'evalbox-scorer')(s) && s.traceId === traceId), {
        what: 'the scoring span in the trace',
      });
      expect(scoring.kind).toBe(SPAN_KIND.consumer);
      expect(scoring.parentSpanId).toBe(ingest.spanId);
      expect(scoring.attributes['evalbox.evaluation_id']).toBe(evaluationId);

      // The judge call is a child of the scoring span, with model, tokens and cache hit.
      const judgeCall = await waitFor(() => receiver.spans.find((s) => byName('judge call', 'evalbox-scorer')(s) && s.traceId === traceId), {
        what: 'the judge call span',
      });
      expect(judgeCall.parentSpanId).toBe(scoring.spanId);
      expect(judgeCall.kind).toBe(SPAN_KIND.client);
      expect(judgeCall.attributes['gen_ai.request.model']).toBe('fake-judge-1');
      expect(judgeCall.attributes['gen_ai.usage.input_tokens']).toBeGreaterThan(0);
      expect(judgeCall.attributes['gen_ai.usage.output_tokens']).toBeGreaterThan(0);
      expect(judgeCall.attributes['evalbox.judge.cache_hit']).toBe(false);

      // The result event carries a traceparent of the same trace: the scoring span's.
      expect(scoredEvent.headers.traceparent).toBe(`00-${traceId}-${scoring.spanId}-01`);
    } finally {
      await created.stop();
      await scored.stop();
    }
  }, 120_000);

  it('tracing off (the default): no span is exported, and a client traceparent still reaches evaluation.scored', async () => {
    const quiet = await startOtlpReceiver();
    // The endpoint is set, the exporter is not: nothing may be sent.
    const off = await startPlatform(database, { OTEL_EXPORTER_OTLP_ENDPOINT: quiet.url, OTEL_BSP_SCHEDULE_DELAY: '100' });
    const scored = await collectTopic(off.topics.scores);
    try {
      const { key } = await createApiKey(database.db, 'untraced-app');
      const clientTrace = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
      const res = await fetch(`${off.apiUrl}/v1/evaluations`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', traceparent: clientTrace },
        body: JSON.stringify({ prompt: 'What is the capital of France?', response: 'Paris.', dimensions: ['pii_leak'] }),
      });
      expect(res.status).toBe(202);
      const { evaluationId } = (await res.json()) as { evaluationId: string };
      const event = await waitFor(() => scored.received.find((r) => r.value.includes(evaluationId)), { what: 'evaluation.scored', timeoutMs: 60_000 });
      expect(event.headers.traceparent).toBe(clientTrace);
      await new Promise((resolve) => setTimeout(resolve, 1_000)); // a batch delay's worth, ten times over
      expect(quiet.spans).toEqual([]);
      expect(quiet.contentTypes.size).toBe(0);
    } finally {
      await scored.stop();
      await off.stop();
      await quiet.close();
    }
  }, 180_000);
});
