// The CLI as an operator uses it: real processes, real stack, exit codes 0/1/2.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { applicationForKey } from '../src/keys.js';
import { createTestDatabase, type TestDatabase } from './helpers.js';

function evalbox(args: string[], env: NodeJS.ProcessEnv = process.env) {
  const result = spawnSync('node', ['bin/evalbox.js', ...args], { encoding: 'utf8', env, timeout: 120_000 });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe('evalbox CLI', () => {
  let database: TestDatabase;
  beforeAll(async () => {
    database = await createTestDatabase({ max: 2 });
  });
  afterAll(async () => database.drop());

  it('lists its commands and answers --help on each', () => {
    const top = evalbox(['--help']);
    expect(top.status).toBe(0);
    for (const command of ['stack', 'migrate', 'keys', 'api', 'relay', 'outbox', 'scorer', 'dlt']) {
      expect(top.stdout).toContain(command);
    }
    for (const command of ['stack', 'migrate', 'keys']) {
      const help = evalbox([command, '--help']);
      expect(help.status).toBe(0);
      expect(help.stdout).toMatch(/Usage:/);
    }
  });

  it('exits 2 on bad usage and on an unknown command', () => {
    expect(evalbox(['no-such-command']).status).toBe(2);
    expect(evalbox(['keys', 'create', '--database-url', database.url]).status).toBe(2);
    expect(evalbox(['migrate', '--no-such-flag']).status).toBe(2);
  });

  it('stack up is idempotent: a second call reuses the running servers and prints lines a shell can eval', () => {
    const env = { ...process.env, DATABASE_URL: '', KAFKA_BROKERS: '' };
    const first = evalbox(['stack', 'up'], env);
    expect(first.status).toBe(0);
    expect(first.stdout).toMatch(/^DATABASE_URL=postgres:\/\/\S+$/m);
    expect(first.stdout).toMatch(/^KAFKA_BROKERS=127\.0\.0\.1:\d+$/m);
    const second = evalbox(['stack', 'up', '--json'], env);
    expect(second.status).toBe(0);
    const endpoints = JSON.parse(second.stdout) as { started: unknown; databaseUrl: string };
    expect(endpoints.started).toEqual({ postgres: false, kafka: false });
    expect(first.stdout).toContain(`DATABASE_URL=${endpoints.databaseUrl}`);
  });

  it('stack up honours DATABASE_URL and KAFKA_BROKERS that point at reachable servers', () => {
    const given = evalbox(['stack', 'up', '--json'], { ...process.env, DATABASE_URL: database.url });
    expect(given.status).toBe(0);
    expect((JSON.parse(given.stdout) as { databaseUrl: string }).databaseUrl).toBe(database.url);
  });

  it('stack up refuses a DATABASE_URL that does not answer, with a clear message', () => {
    const bad = evalbox(['stack', 'up'], { ...process.env, DATABASE_URL: 'postgres://nobody@127.0.0.1:1/none' });
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/DATABASE_URL is set but .* is not reachable/);
  });

  it('stack status says what runs where', () => {
    const status = evalbox(['stack', 'status', '--json']);
    expect(status.status).toBe(0);
    const parsed = JSON.parse(status.stdout) as { postgres: { running: boolean }; kafka: { running: boolean; logFile: string } };
    expect(parsed.postgres.running).toBe(true);
    expect(parsed.kafka.running).toBe(true);
    expect(parsed.kafka.logFile).toMatch(/server\.log$/);
  });

  it('keys create prints the key alone; list shows only its prefix; revoke disables it', async () => {
    const created = evalbox(['keys', 'create', '--app', 'cli-app', '--database-url', database.url]);
    expect(created.status).toBe(0);
    const key = created.stdout.trim();
    expect(key).toMatch(/^ebx_[A-Za-z0-9_-]{32}$/);
    expect(await applicationForKey(database.db, key)).toBe('cli-app');

    const listed = evalbox(['keys', 'list', '--json', '--database-url', database.url]);
    const rows = JSON.parse(listed.stdout) as { prefix: string; application_id: string }[];
    expect(rows).toEqual([expect.objectContaining({ application_id: 'cli-app', prefix: key.slice(0, 12) })]);
    expect(listed.stdout).not.toContain(key);

    const revoked = evalbox(['keys', 'revoke', key.slice(0, 12), '--database-url', database.url]);
    expect(revoked.status).toBe(0);
    expect(await applicationForKey(database.db, key)).toBeUndefined();
  });

  it('migrate on an up-to-date database applies nothing', () => {
    const result = evalbox(['migrate', '--database-url', database.url]);
    expect(result.status).toBe(0);
    expect(result.stdout).toMatch(/up to date/);
  });
});
