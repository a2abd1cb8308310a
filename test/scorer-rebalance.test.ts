// A rebalance with work in flight: a second real consumer joins the group while the first is in
// the middle of scoring the events of the partitions it is about to lose.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { sql } from 'kysely';
import type { Producer } from '../src/kafka.js';
import type { Scorer, ScoreRow } from '../consumers/scorer.js';
import { createTestDatabase, uniqueName, waitFor, type TestDatabase } from './helpers.js';
import { createEvaluation, createTopics, produceEvent, startScorer, testProducer, type Harness } from './scorer-helpers.js';

describe('rebalance with work in flight', () => {
  let database: TestDatabase;
  let producer: Producer;
  const harnesses: Harness[] = [];
  beforeAll(async () => {
    database = await createTestDatabase({ max: 20 });
    producer = await testProducer();
  });
  afterAll(async () => {
    for (const h of harnesses) await h.stop();
    await producer.disconnect();
    await database.drop();
  });

  it('a rebalance never runs the same event to completion on two members: revoked work is aborted, each evaluation is paid for once, and row, status and event agree', async () => {
    const topics = await createTopics(4);
    // Every scoring waits for the gate (or its abort): the first member has all of them in flight
    // when the second joins, and finishes none before the revocation.
    let openGate!: () => void;
    const gate = new Promise<void>((resolve) => (openGate = resolve));
    const completed = new Map<string, number>();
    const aborted: string[] = [];
    const slow: Scorer = {
      dimension: 'toxicity',
      name: 'test-slow',
      version: '1',
      async score(_inputs, { signal, evaluationId }): Promise<ScoreRow> {
        await new Promise<void>((resolve) => {
          if (signal.aborted) return resolve();
          signal.addEventListener('abort', () => resolve(), { once: true });
          void gate.then(resolve);
        });
        if (signal.aborted) {
          aborted.push(evaluationId);
          throw new Error('aborted');
        }
        // A paid call that came back: counted once per member that got this far.
        completed.set(evaluationId, (completed.get(evaluationId) ?? 0) + 1);
        return {
          dimension: 'toxicity',
          status: 'COMPLETED',
          value: 0.25,
          label: null,
          raw_value: null,
          direction: 'lower_is_better',
          reasoning: 'slow test scorer',
          source: 'HEURISTIC',
          scorer_name: 'test-slow',
          scorer_version: '1',
          error_code: null,
        };
      },
    };
    const groupId = uniqueName('rebalance-group');
    const first = await startScorer(database, topics, { producer, groupId, scorers: new Map([['toxicity', slow]]) });
    harnesses.push(first);
    await waitFor(() => first.consumer.progress().size === 4, { what: 'the first member to own all four partitions', timeoutMs: 30_000 });
    const ids: string[] = [];
    for (let i = 0; i < 40; i++) {
      const data = await createEvaluation(database, ['toxicity'], { applicationId: `app-${i % 8}` });
      await produceEvent(producer, topics.events, data);
      ids.push(data.evaluationId);
    }
    await waitFor(() => first.consumer.inFlight() === 40, { what: 'all 40 in flight on the first member' });

    let revoked = 0;
    first.consumer.events.on('consumer:revoked', (tps) => (revoked += tps.length));
    const second = await startScorer(database, topics, { producer, groupId, scorers: new Map([['toxicity', slow]]) });
    harnesses.push(second);
    await waitFor(() => revoked > 0 && second.consumer.progress().size > 0, { what: 'the rebalance', timeoutMs: 30_000 });
    // The new owner has the redelivered events in flight too before anything may finish.
    await waitFor(() => second.consumer.inFlight() > 0, { what: 'the second member to start on its partitions', timeoutMs: 30_000 });
    openGate();

    await waitFor(
      async () =>
        Number(
          (await sql<{ n: string }>`SELECT count(*) AS n FROM evaluations WHERE id = ANY(${ids}::uuid[]) AND status <> 'PENDING'`.execute(database.db)).rows[0]
            ?.n,
        ) === ids.length,
      { what: 'every evaluation terminal', timeoutMs: 60_000 },
    );
    // No evaluation was scored to completion (paid for) on both members ...
    expect([...completed.entries()].filter(([, n]) => n > 1)).toEqual([]);
    // ... because work was really in flight at the revocation, and it was aborted, not finished.
    expect(aborted.length).toBeGreaterThan(0);
    const consistent = await sql<{ id: string; status: string; row_status: string; events: string; event_status: string | null }>`
      SELECT e.id, e.status, s.status AS row_status,
             (SELECT count(*) FROM outbox o WHERE o.type = 'evaluation.scored' AND o.payload->>'evaluationId' = e.id::text) AS events,
             (SELECT o.payload->>'status' FROM outbox o WHERE o.type = 'evaluation.scored' AND o.payload->>'evaluationId' = e.id::text LIMIT 1) AS event_status
      FROM evaluations e JOIN scores s ON s.evaluation_id = e.id
      WHERE e.id = ANY(${ids}::uuid[])`.execute(database.db);
    expect(consistent.rows).toHaveLength(40);
    for (const r of consistent.rows) expect([r.status, r.row_status, r.events, r.event_status]).toEqual(['SCORED', 'COMPLETED', '1', 'SCORED']);
  });
});
