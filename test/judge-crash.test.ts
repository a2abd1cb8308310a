// A scorer process killed with kill -9 at the moment the judge answered, before the verdict could
// reach the judge cache (its write runs after the answer, alongside the caller), then restarted:
// every evaluation ends terminal exactly once, and the provider is paid at most once more per
// call that was in flight at the kill (the dead process's claims expire and are taken over).
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { sql } from 'kysely';
import type { Producer } from '../src/kafka.js';
import { startFakeJudge, type FakeJudge } from '../src/fake-judge/server.js';
import { createTestDatabase, exitOf, kafkaBrokers, uniqueName, waitFor, type TestDatabase } from './helpers.js';
import { createEvaluation, createTopics, produceEvent, testProducer } from './scorer-helpers.js';

describe('judge: kill -9 of the scorer between the judge’s answer and the cache write', () => {
  let database: TestDatabase;
  let producer: Producer;
  let fake: FakeJudge;
  let victim: ChildProcess | undefined;
  let inFlightAtKill = -1;
  let answeredAtKill = -1;
  const children: ChildProcess[] = [];
  const configFile = path.join(os.tmpdir(), `${uniqueName('judge-crash')}.json`);

  beforeAll(async () => {
    database = await createTestDatabase({ max: 5 });
    producer = await testProducer();
    fake = await startFakeJudge({
      latencyMs: 400,
      // The first paid answer kills the scorer as it is sent: the provider has answered (and
      // charged); the scorer has not stored the verdict.
      onAnswered: () => {
        if (!victim) return;
        inFlightAtKill = fake.stats().inFlight;
        answeredAtKill = (fake.stats().byOutcome.ok ?? 0) + 1;
        victim.kill('SIGKILL');
        victim = undefined;
      },
    });
    fs.writeFileSync(
      configFile,
      JSON.stringify({
        endpoints: [{ name: 'fake', baseUrl: fake.url, model: 'fake-judge-1', timeoutMs: 2000, maxConcurrency: 8 }],
        prices: { 'fake-judge-1': { inputPerMTok: 1, outputPerMTok: 2 } },
        // A claim of a dead process lives this long before another takes it over.
        cache: { claimTtlMs: 4000, maxWaitMs: 1000 },
      }),
    );
  });
  afterAll(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    fs.rmSync(configFile, { force: true });
    await fake.close();
    await producer.disconnect();
    await database.drop();
  });

  it('guarantee 4: after a kill -9 just after the judge answered, a restart pays at most once more per call in flight at the kill; one row and one event per evaluation', async () => {
    const topics = await createTopics(3);
    const group = uniqueName('group');
    const spawnScorer = () => {
      const child = spawn('node', ['bin/evalbox.js', 'scorer', '--database-url', database.url, '--kafka-brokers', kafkaBrokers(), '--group', group], {
        env: {
          ...process.env,
          EVALBOX_TOPIC_EVENTS: topics.events,
          EVALBOX_TOPIC_SCORES: topics.scores,
          EVALBOX_TOPIC_DLT: topics.dlt,
          EVALBOX_JUDGE_CONFIG: configFile,
          EVALBOX_LOG_LEVEL: 'warn',
        },
        stdio: 'ignore',
      });
      children.push(child);
      return child;
    };
    // 12 evaluations over 6 distinct contents, on three partitions.
    const ids: string[] = [];
    for (let i = 0; i < 12; i++) {
      const data = await createEvaluation(database, ['judge_relevance'], { response: `Crash content ${i % 6}.`, applicationId: `app-${i % 3}` });
      await produceEvent(producer, topics.events, data);
      ids.push(data.evaluationId);
    }
    const first = spawnScorer();
    victim = first;
    await exitOf(first);
    expect(first.signalCode).toBe('SIGKILL');
    // The kill hit the window: at least one answer was paid for and is not in the cache.
    const cachedAtKill = Number((await sql<{ n: string }>`SELECT count(*) AS n FROM judge_cache WHERE state = 'DONE'`.execute(database.db)).rows[0]?.n);
    expect(answeredAtKill).toBeGreaterThanOrEqual(1);
    expect(cachedAtKill).toBeLessThan(answeredAtKill);
    const terminalAtKill = Number((await sql<{ n: string }>`SELECT count(*) AS n FROM evaluations WHERE status <> 'PENDING'`.execute(database.db)).rows[0]?.n);
    expect(terminalAtKill).toBe(0);

    spawnScorer();
    await waitFor(
      async () => Number((await sql<{ n: string }>`SELECT count(*) AS n FROM evaluations WHERE status <> 'PENDING'`.execute(database.db)).rows[0]?.n) === 12,
      { what: 'every evaluation terminal after the restart', timeoutMs: 90_000 },
    );
    const rows = await database.db.selectFrom('scores').select(['evaluation_id', 'status']).execute();
    expect(rows).toHaveLength(12);
    expect(rows.every((r) => r.status === 'COMPLETED')).toBe(true);
    const events = await sql<{ n: string }>`SELECT count(*) AS n FROM outbox WHERE type = 'evaluation.scored'`.execute(database.db);
    expect(Number(events.rows[0]?.n)).toBe(12);

    const stats = fake.stats();
    const paidAgain = (stats.byOutcome.ok ?? 0) - stats.distinctContent;
    process.stdout.write(
      `judge kill -9: in flight at the kill ${inFlightAtKill}, answered ${answeredAtKill}, cached ${cachedAtKill}; paid ${stats.byOutcome.ok} for ${stats.distinctContent} contents (${paidAgain} again)\n`,
    );
    expect(stats.distinctContent).toBe(6);
    // The bound docs/consumers.md states: at most one extra payment per call in flight at the kill.
    expect(paidAgain).toBeLessThanOrEqual(inFlightAtKill);
    expect(Math.max(...Object.values(stats.byContentHash))).toBeLessThanOrEqual(2);

    // The verdicts paid after the restart reached the cache: the same contents again cost nothing.
    const again: string[] = [];
    for (let i = 0; i < 6; i++) {
      const data = await createEvaluation(database, ['judge_relevance'], { response: `Crash content ${i}.`, applicationId: 'app-0' });
      await produceEvent(producer, topics.events, data);
      again.push(data.evaluationId);
    }
    await waitFor(
      async () =>
        Number(
          (await sql<{ n: string }>`SELECT count(*) AS n FROM evaluations WHERE id = ANY(${again}::uuid[]) AND status <> 'PENDING'`.execute(database.db))
            .rows[0]?.n,
        ) === 6,
      { what: 'the second round terminal', timeoutMs: 60_000 },
    );
    expect(fake.stats().byOutcome.ok).toBe(stats.byOutcome.ok);
  });
});
