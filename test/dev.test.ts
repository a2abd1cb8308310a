// `evalbox dev --once` as a new user runs it: the whole process tree, demo traffic, the summary,
// and the exit code that says whether anything was lost or stuck. Faults are real: a child is
// killed with SIGKILL, another frozen with SIGSTOP.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { sql } from 'kysely';
import { createTestDatabase, kafkaBrokers, uniqueName, waitFor, type TestDatabase } from './helpers.js';

interface DevRun {
  child: ChildProcess;
  output(): string;
  exit: Promise<number | null>;
}

function startDev(database: TestDatabase, cacheDir: string, args: string[]): DevRun {
  const topic = uniqueName('dev-events');
  let output = '';
  const child = spawn('node', ['bin/evalbox.js', 'dev', '--once', ...args], {
    env: {
      ...process.env,
      DATABASE_URL: database.url,
      KAFKA_BROKERS: kafkaBrokers(),
      EVALBOX_CACHE_DIR: cacheDir,
      EVALBOX_TOPIC_EVENTS: topic,
      EVALBOX_TOPIC_SCORES: `${topic}-scores`,
      EVALBOX_TOPIC_DLT: `${topic}.DLT`,
      EVALBOX_SCORER_GROUP: uniqueName('dev-scorer'),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout?.on('data', (d) => (output += d));
  child.stderr?.on('data', (d) => (output += d));
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, output: () => output, exit };
}

/** Every pid the run reported starting, by process name. */
const startedPids = (output: string, name?: string): number[] =>
  [...output.matchAll(/started (\S+) pid=(\d+)/g)].filter((m) => !name || m[1] === name).map((m) => Number(m[2]));

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe('evalbox dev --once', () => {
  let database: TestDatabase;
  let cacheDir: string;
  const runs: DevRun[] = [];

  beforeAll(async () => {
    database = await createTestDatabase({ max: 2 });
    cacheDir = fs.mkdtempSync(path.join(os.tmpdir(), 'evalbox-dev-'));
  });
  afterAll(async () => {
    for (const run of runs) {
      if (run.child.exitCode === null) run.child.kill('SIGKILL');
      for (const pid of startedPids(run.output())) if (alive(pid)) process.kill(pid, 'SIGKILL');
    }
    await database.drop();
    fs.rmSync(cacheDir, { recursive: true, force: true });
  });

  it('carries the demo traffic end to end, restarts a killed scorer, and exits 0 with a summary', async () => {
    const run = startDev(database, cacheDir, ['--evaluations', '24', '--rate', '40', '--seed', '7']);
    runs.push(run);
    // Kill the scorer the moment traffic starts: the supervisor must report it and start another.
    await waitFor(() => run.output().includes('all processes ready'), { timeoutMs: 120_000, what: 'the process tree' });
    const [scorerPid] = startedPids(run.output(), 'scorer');
    process.kill(scorerPid as number, 'SIGKILL');
    // The tree includes the web console, whose URL is printed as soon as the processes are ready.
    const consoleUrl = /console: (http:\/\/127\.0\.0\.1:\d+)/.exec(run.output())?.[1];
    const pipeline = await waitFor(
      async () => ((await fetch(`${consoleUrl}/pipeline`).catch(() => undefined))?.ok ? fetch(`${consoleUrl}/pipeline`).then((r) => r.text()) : undefined),
      {
        timeoutMs: 60_000,
        what: 'the console',
      },
    );
    expect(pipeline).toContain('Outbox backlog');

    expect(await run.exit).toBe(0);
    const output = run.output();
    expect(output).toMatch(/scorer exited \(signal SIGKILL\); restarting/);
    expect(output).toMatch(/started scorer pid=\d+ \(restart 1\)/);
    expect(output).toContain('malformed -> expected 4xx 5/5');
    expect(output).toContain('OK: all 24 accepted evaluations are terminal');
    expect(output).toMatch(/Mean score per dimension and application[\s\S]*support-bot[\s\S]*travel-agent/);
    expect(output).toMatch(/p50 accept->scored/);

    // The database agrees: 24 terminal evaluations with every requested dimension scored once,
    // and an evaluation.created and an evaluation.scored event for each.
    const { rows } = await sql<{ terminal: string; scores: string; events: string }>`
      SELECT (SELECT count(*) FROM evaluations WHERE status <> 'PENDING') AS terminal,
             (SELECT count(*) FROM scores) AS scores,
             (SELECT count(*) FROM outbox) AS events`.execute(database.db);
    expect(rows[0]).toEqual({ terminal: '24', scores: String(24 * 6), events: '48' });

    // Nothing left behind: every process the tree started has exited.
    const pids = startedPids(output);
    expect(pids.length).toBeGreaterThanOrEqual(6);
    expect(pids.filter(alive)).toEqual([]);
  });

  it('exits non-zero and names the stuck evaluations when the scorer cannot make progress', async () => {
    const run = startDev(database, cacheDir, ['--evaluations', '6', '--rate', '40', '--timeout-s', '8']);
    runs.push(run);
    await waitFor(() => run.output().includes('all processes ready'), { timeoutMs: 120_000, what: 'the process tree' });
    const [scorerPid] = startedPids(run.output(), 'scorer');
    process.kill(scorerPid as number, 'SIGSTOP');
    try {
      await waitFor(() => run.output().includes('FAILED:'), { timeoutMs: 60_000, what: 'the verdict' });
    } finally {
      process.kill(scorerPid as number, 'SIGCONT');
    }
    expect(await run.exit).toBe(1);
    expect(run.output()).toMatch(/FAILED: 6 evaluation\(s\) still PENDING \(stuck\)/);
  });
});
