// The scorer as real processes: a crash mid-batch, a second replica joining, SIGTERM.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { spawn, type ChildProcess } from 'node:child_process';
import { sql } from 'kysely';
import type { Topics } from '../src/config.js';
import type { Producer } from '../src/kafka.js';
import { createTestDatabase, kafkaBrokers, uniqueName, waitFor, type TestDatabase } from './helpers.js';
import { createEvaluation, createTopics, produceEvent, testProducer } from './scorer-helpers.js';

const exitOf = (child: ChildProcess) =>
  new Promise<number | null>((resolve) => (child.exitCode !== null ? resolve(child.exitCode) : child.once('exit', (code) => resolve(code))));

describe('scorer processes', () => {
  let database: TestDatabase;
  let producer: Producer;
  const children: ChildProcess[] = [];
  beforeAll(async () => {
    database = await createTestDatabase({ max: 10 });
    producer = await testProducer();
  });
  afterAll(async () => {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    await producer.disconnect();
    await database.drop();
  });

  function spawnScorer(topics: Topics, group: string, extra: string[] = []): ChildProcess & { output(): string } {
    let output = '';
    const child = spawn('node', ['bin/evalbox.js', 'scorer', '--database-url', database.url, '--kafka-brokers', kafkaBrokers(), '--group', group, ...extra], {
      env: {
        ...process.env,
        EVALBOX_TOPIC_EVENTS: topics.events,
        EVALBOX_TOPIC_SCORES: topics.scores,
        EVALBOX_TOPIC_DLT: topics.dlt,
        EVALBOX_LOG_LEVEL: 'info',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout?.on('data', (d) => (output += d));
    child.stderr?.on('data', (d) => (output += d));
    children.push(child);
    return Object.assign(child, { output: () => output });
  }

  async function seed(topics: Topics, count: number): Promise<string[]> {
    const ids: string[] = [];
    for (let i = 0; i < count; i++) {
      const data = await createEvaluation(database, ['groundedness', 'answer_relevance', 'pii_leak', 'toxicity'], { applicationId: `app-${i % 3}` });
      await produceEvent(producer, topics.events, data);
      ids.push(data.evaluationId);
    }
    return ids;
  }

  const terminal = async (ids: string[]) =>
    Number(
      (await sql<{ n: string }>`SELECT count(*) AS n FROM evaluations WHERE id = ANY(${ids}::uuid[]) AND status <> 'PENDING'`.execute(database.db)).rows[0]?.n,
    );

  /** Exactly one evaluation.scored event and four score rows per evaluation. */
  async function expectExactlyOnce(ids: string[]) {
    const events = await sql<{
      id: string;
      n: string;
    }>`SELECT payload->>'evaluationId' AS id, count(*) AS n FROM outbox WHERE type = 'evaluation.scored' AND payload->>'evaluationId' = ANY(${ids}) GROUP BY 1`.execute(
      database.db,
    );
    expect(events.rows).toHaveLength(ids.length);
    expect(events.rows.every((r) => r.n === '1')).toBe(true);
    const scores = await sql<{ n: string }>`SELECT count(*) AS n FROM scores WHERE evaluation_id = ANY(${ids}::uuid[])`.execute(database.db);
    expect(Number(scores.rows[0]?.n)).toBe(ids.length * 4);
  }

  it('guarantees 3 and 4: after a kill -9 mid-batch and a restart every evaluation is terminal, with no duplicates', async () => {
    const topics = await createTopics(3);
    const group = uniqueName('group');
    const ids = await seed(topics, 600);
    const first = spawnScorer(topics, group);
    await waitFor(async () => (await terminal(ids)) >= 50, { what: 'some progress', timeoutMs: 60_000 });
    first.kill('SIGKILL');
    await exitOf(first);
    expect(await terminal(ids)).toBeLessThan(ids.length);
    const second = spawnScorer(topics, group);
    await waitFor(async () => (await terminal(ids)) === ids.length, { what: 'every evaluation terminal', timeoutMs: 90_000 });
    await expectExactlyOnce(ids);
    second.kill('SIGTERM');
    expect(await exitOf(second)).toBe(0);
  });

  it('rebalances when a second scorer joins: no loss, no duplicate', async () => {
    const topics = await createTopics(6);
    const group = uniqueName('group');
    const a = spawnScorer(topics, group);
    await waitFor(() => a.output().includes('partitions assigned'), { what: 'A to get partitions', timeoutMs: 30_000 });
    const ids = await seed(topics, 150);
    const b = spawnScorer(topics, group);
    const more = await seed(topics, 150);
    await waitFor(() => b.output().includes('partitions assigned'), { what: 'B to get partitions', timeoutMs: 30_000 });
    const all = [...ids, ...more];
    await waitFor(async () => (await terminal(all)) === all.length, { what: 'every evaluation terminal', timeoutMs: 90_000 });
    await expectExactlyOnce(all);
    expect(a.output()).toMatch(/partitions revoked/);
    a.kill('SIGTERM');
    b.kill('SIGTERM');
    expect(await exitOf(a)).toBe(0);
    expect(await exitOf(b)).toBe(0);
  });

  it('guarantee 7: SIGTERM drains in-flight work, commits and exits 0; a restart finishes the rest exactly once', async () => {
    const topics = await createTopics(3);
    const group = uniqueName('group');
    const ids = await seed(topics, 200);
    // A small in-flight bound leaves work for the restart after the drain.
    const scorer = spawnScorer(topics, group, ['--max-in-flight', '10']);
    await waitFor(async () => (await terminal(ids)) >= 20, { what: 'some progress', timeoutMs: 60_000 });
    scorer.kill('SIGTERM');
    expect(await exitOf(scorer)).toBe(0);
    expect(scorer.output()).toMatch(/"msg":"stopped"/);
    const drained = await terminal(ids);
    expect(drained).toBeLessThan(ids.length);
    const restarted = spawnScorer(topics, group);
    await waitFor(() => restarted.output().includes('scorer started'), { what: 'the restart', timeoutMs: 30_000 });
    await waitFor(async () => (await terminal(ids)) === ids.length, { what: 'every evaluation terminal', timeoutMs: 90_000 });
    await expectExactlyOnce(ids);
    restarted.kill('SIGTERM');
    expect(await exitOf(restarted)).toBe(0);
  });
});
