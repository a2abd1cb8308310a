// The scorer as real processes: a crash mid-batch, a second replica joining, SIGTERM.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { spawn, type ChildProcess } from 'node:child_process';
import { sql } from 'kysely';
import type { Topics } from '../src/config.js';
import type { Producer } from '../src/kafka.js';
import { createTestDatabase, exitOf, kafkaBrokers, uniqueName, waitFor, type TestDatabase } from './helpers.js';
import { startFakeJudge } from '../src/fake-judge/server.js';
import { createEvaluation, createTopics, produceEvent, testProducer } from './scorer-helpers.js';
import { expectRowLockFree, gateInserts } from './paused-process.js';

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

  function spawnScorer(topics: Topics, group: string, extra: string[] = [], env: Record<string, string> = {}): ChildProcess & { output(): string } {
    let output = '';
    const child = spawn('node', ['bin/evalbox.js', 'scorer', '--database-url', database.url, '--kafka-brokers', kafkaBrokers(), '--group', group, ...extra], {
      env: {
        ...process.env,
        EVALBOX_TOPIC_EVENTS: topics.events,
        EVALBOX_TOPIC_SCORES: topics.scores,
        EVALBOX_TOPIC_DLT: topics.dlt,
        EVALBOX_LOG_LEVEL: 'info',
        ...env,
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

  /** Exactly one evaluation.scored event and one score row per dimension (four unless told) per evaluation. */
  async function expectExactlyOnce(ids: string[], dimensionsEach = 4) {
    const events = await sql<{
      id: string;
      n: string;
    }>`SELECT payload->>'evaluationId' AS id, count(*) AS n FROM outbox WHERE type = 'evaluation.scored' AND payload->>'evaluationId' = ANY(${ids}) GROUP BY 1`.execute(
      database.db,
    );
    expect(events.rows).toHaveLength(ids.length);
    expect(events.rows.every((r) => r.n === '1')).toBe(true);
    const scores = await sql<{ n: string }>`SELECT count(*) AS n FROM scores WHERE evaluation_id = ANY(${ids}::uuid[])`.execute(database.db);
    expect(Number(scores.rows[0]?.n)).toBe(ids.length * dimensionsEach);
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

  it('rebalances when a second scorer joins with judge calls in flight at the revoke: no loss, no duplicate, nothing paid twice', async () => {
    const topics = await createTopics(6);
    const group = uniqueName('group');
    // A slow judge keeps the first member busy: the revocation finds its work in flight.
    const fake = await startFakeJudge({ latencyMs: 800 });
    const judgeEnv = { EVALBOX_JUDGE_BASE_URL: fake.url, EVALBOX_JUDGE_MODEL: 'fake-judge-1' };
    try {
      const a = spawnScorer(topics, group, [], judgeEnv);
      await waitFor(() => a.output().includes('partitions assigned'), { what: 'A to get partitions', timeoutMs: 30_000 });
      const dimensions = ['toxicity', 'judge_relevance'];
      const all: string[] = [];
      const produce = async (n: number) => {
        for (let i = 0; i < n; i++) {
          const data = await createEvaluation(database, dimensions, { applicationId: `app-${all.length % 3}`, response: `Rebalance answer ${all.length}.` });
          await produceEvent(producer, topics.events, data);
          all.push(data.evaluationId);
        }
      };
      await produce(60);
      await waitFor(() => fake.stats().inFlight > 0, { what: 'judge calls in flight on A', timeoutMs: 30_000 });
      const b = spawnScorer(topics, group, [], judgeEnv);
      // New work keeps arriving until A loses partitions, so the revocation finds calls in flight.
      while (!a.output().includes('partitions revoked') && all.length < 600) await produce(10);
      const inFlightAtRevoke = fake.stats().inFlight;
      await waitFor(() => b.output().includes('partitions assigned'), { what: 'B to get partitions', timeoutMs: 30_000 });
      await waitFor(async () => (await terminal(all)) === all.length, { what: 'every evaluation terminal', timeoutMs: 120_000 });
      expect(inFlightAtRevoke).toBeGreaterThan(0);
      await expectExactlyOnce(all, dimensions.length);
      // Revoked judge calls finish into the cache: the new owner gets them as hits.
      expect(fake.stats().duplicates).toBe(0);
      a.kill('SIGTERM');
      b.kill('SIGTERM');
      expect(await exitOf(a)).toBe(0);
      expect(await exitOf(b)).toBe(0);
    } finally {
      await fake.close();
    }
  });

  it('guarantee 7: SIGTERM drains in-flight work, commits and exits 0; a restart finishes the rest exactly once', async () => {
    const topics = await createTopics(3);
    const group = uniqueName('group');
    const fake = await startFakeJudge({ latencyMs: 1500 });
    try {
      const ids: string[] = [];
      for (let i = 0; i < 60; i++) {
        const data = await createEvaluation(database, ['toxicity', 'judge_relevance'], { applicationId: `app-${i % 3}`, response: `Answer ${i}.` });
        await produceEvent(producer, topics.events, data);
        ids.push(data.evaluationId);
      }
      // A small in-flight bound leaves work for the restart after the drain.
      const judgeEnv = { EVALBOX_JUDGE_BASE_URL: fake.url, EVALBOX_JUDGE_MODEL: 'fake-judge-1' };
      const scorer = spawnScorer(topics, group, ['--max-in-flight', '5'], judgeEnv);
      // SIGTERM while judge calls are in flight: every one of them must be finished and written.
      await waitFor(() => fake.stats().inFlight > 0, { what: 'judge calls in flight', timeoutMs: 30_000 });
      scorer.kill('SIGTERM');
      expect(await exitOf(scorer)).toBe(0);
      expect(scorer.output()).toMatch(/"msg":"stopped"/);
      const started = fake.stats().total;
      const written = Number(
        (
          await sql<{ n: string }>`SELECT count(*) AS n FROM scores WHERE evaluation_id = ANY(${ids}::uuid[]) AND dimension = 'judge_relevance'`.execute(
            database.db,
          )
        ).rows[0]?.n,
      );
      expect(started).toBeGreaterThan(0);
      expect(written).toBe(started);
      const drained = await terminal(ids);
      expect(drained).toBeLessThan(ids.length);
      const restarted = spawnScorer(topics, group, [], judgeEnv);
      await waitFor(async () => (await terminal(ids)) === ids.length, { what: 'every evaluation terminal', timeoutMs: 90_000 });
      // Nothing the first process paid for is paid again.
      expect(fake.stats().duplicates).toBe(0);
      restarted.kill('SIGTERM');
      expect(await exitOf(restarted)).toBe(0);
    } finally {
      await fake.close();
    }
  });

  it('SIGTERM exits as soon as the drain is done, not when the grace timer fires', async () => {
    const topics = await createTopics(1);
    const ids = await seed(topics, 5);
    const scorer = spawnScorer(topics, uniqueName('group'), ['--grace-ms', '60000']);
    await waitFor(async () => (await terminal(ids)) === ids.length, { what: 'every evaluation terminal', timeoutMs: 60_000 });
    const signalled = Date.now();
    scorer.kill('SIGTERM');
    expect(await exitOf(scorer)).toBe(0);
    // Nothing was in flight: a process still alive long after its drain is held by something.
    expect(Date.now() - signalled).toBeLessThan(30_000);
  });

  it('guarantee 7 (old form): SIGTERM with heuristic work only drains, commits and exits 0; a restart finishes the rest exactly once', async () => {
    const topics = await createTopics(3);
    const group = uniqueName('group');
    const ids = await seed(topics, 200);
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

  it('a scorer paused (SIGSTOP) inside its score-writing transaction is cut off by the database: it holds neither row locks nor the snapshot horizon; resumed, it scores exactly once', async () => {
    const topics = await createTopics(1);
    // The score insert waits at a gate: the scorer is paused inside its transaction (evaluation
    // row locked, xid taken), and the statement ends while it cannot send its COMMIT.
    const gate = await gateInserts(database, 'scores', 7301);
    const scorer = spawnScorer(topics, uniqueName('group'));
    try {
      const ids = await seed(topics, 1);
      const paused = await gate.pauseInside(scorer, 'evalbox-scorer');
      // The transaction stays open, idle, holding the row lock and the horizon, until the database
      // ends the session (the scorer's default bound, 10 s).
      const endedAfter = await gate.waitUntilLetGo(paused, 'the paused scorer to let go of its session and the horizon');
      process.stdout.write(`scorer paused inside its transaction: session ended ${endedAfter} ms after the pause\n`);
      // The evaluation row it had locked is free for others while the scorer is still paused.
      await expectRowLockFree(database, 'evaluations', ids[0] as string);
      scorer.kill('SIGCONT');
      await waitFor(async () => (await terminal(ids)) === 1, { what: 'the resumed scorer to score the evaluation', timeoutMs: 60_000 });
      await expectExactlyOnce(ids);
      // Scored, not failed: the write the database cut off is retried, never dead-lettered.
      const statuses = await sql<{ status: string }>`SELECT DISTINCT status FROM scores WHERE evaluation_id = ${ids[0]}::uuid`.execute(database.db);
      expect(statuses.rows).toEqual([{ status: 'COMPLETED' }]);
    } finally {
      scorer.kill('SIGCONT');
      scorer.kill('SIGKILL');
      await exitOf(scorer);
      await gate.remove();
    }
  });
});
