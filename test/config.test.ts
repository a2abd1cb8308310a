// One typed configuration for every process: environment, an optional file, flags; printed by
// `evalbox config` with secrets masked; a wrong value stops a process at start, naming it; the
// --help option lists come from it.
import { afterAll, describe, expect, it } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describeConfig, describeSetting, loadConfig, scopeOf } from '../src/config.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'evalbox-config-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function evalbox(args: string[], env: Record<string, string> = {}) {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('EVALBOX_') && k !== 'DATABASE_URL' && k !== 'KAFKA_BROKERS'));
  return spawnSync('node', ['bin/evalbox.js', ...args], { env: { ...clean, ...env }, encoding: 'utf8', timeout: 60_000 });
}

function configFile(values: Record<string, unknown>): string {
  const file = path.join(dir, `config-${Math.random().toString(36).slice(2)}.json`);
  fs.writeFileSync(file, JSON.stringify(values));
  return file;
}

describe('configuration', () => {
  it('reads flag over environment over file over default, the relay and scorer settings included', () => {
    const file = configFile({ EVALBOX_RELAY_BATCH_SIZE: 500, EVALBOX_SCORER_GROUP: 'from-file', EVALBOX_SCORER_MAX_IN_FLIGHT: 7 });
    const config = loadConfig({ EVALBOX_CONFIG_FILE: file, EVALBOX_SCORER_GROUP: 'from-env' }, { 'max-in-flight': '9' });
    expect(config.relay.batchSize).toBe(500);
    expect(config.scorer.group).toBe('from-env');
    expect(config.scorer.maxInFlight).toBe(9);
    expect(config.relay.maxShards).toBe(Number.MAX_SAFE_INTEGER);
    const sources = Object.fromEntries(describeConfig({ EVALBOX_CONFIG_FILE: file, EVALBOX_SCORER_GROUP: 'from-env' }, {}).map((s) => [s.env, s.source]));
    expect(sources).toMatchObject({
      EVALBOX_RELAY_BATCH_SIZE: 'file',
      EVALBOX_SCORER_GROUP: 'env',
      EVALBOX_SCORER_MAX_IN_FLIGHT: 'file',
      EVALBOX_API_PORT: 'default',
    });
  });

  it('every setting has a description and belongs to a process', () => {
    const settings = describeConfig({}, {});
    expect(settings.length).toBeGreaterThan(40);
    expect(settings.filter((s) => !describeSetting(s.env)).map((s) => s.env)).toEqual([]);
    expect(new Set(settings.map((s) => scopeOf(s.env)))).toEqual(new Set(['common', 'api', 'relay', 'scorer']));
    // One variable, one setting.
    expect(new Set(settings.map((s) => s.env)).size).toBe(settings.length);
  });

  it('evalbox config prints the effective configuration with secrets masked', () => {
    const file = configFile({ EVALBOX_RELAY_LEASE_TTL_MS: 15000 });
    const result = evalbox(['config', '--json'], {
      DATABASE_URL: 'postgres://evalbox:hunter2@db:5432/evalbox',
      EVALBOX_JUDGE_API_KEY: 'sk-live-abcdef',
      EVALBOX_CONFIG_FILE: file,
    });
    expect(result.status).toBe(0);
    expect(result.stdout).not.toContain('hunter2');
    expect(result.stdout).not.toContain('sk-live-abcdef');
    const rows = JSON.parse(result.stdout) as { variable: string; value: string; source: string }[];
    const row = (name: string) => rows.find((r) => r.variable === name);
    expect(row('DATABASE_URL')).toMatchObject({ value: 'postgres://evalbox:****@db:5432/evalbox', source: 'env' });
    expect(row('EVALBOX_JUDGE_API_KEY')).toMatchObject({ value: '****', source: 'env' });
    expect(row('EVALBOX_RELAY_LEASE_TTL_MS')).toMatchObject({ value: '15000', source: 'file' });
  });

  it('a wrong value stops a process at start with a message naming the variable (environment or file)', () => {
    const fromEnv = evalbox(['relay'], { EVALBOX_RELAY_BATCH_SIZE: 'lots' });
    expect(fromEnv.status).not.toBe(0);
    expect(fromEnv.stderr).toContain('EVALBOX_RELAY_BATCH_SIZE must be an integer >= 1, got "lots"');

    const scorer = evalbox(['scorer'], { EVALBOX_SCORER_ORDERING_KEY: 'random' });
    expect(scorer.status).not.toBe(0);
    expect(scorer.stderr).toContain('EVALBOX_SCORER_ORDERING_KEY must be one of evaluation, kafka-key, got "random"');

    const file = configFile({ EVALBOX_API_RATE_BURST: -1 });
    const fromFile = evalbox(['api'], { EVALBOX_CONFIG_FILE: file });
    expect(fromFile.status).not.toBe(0);
    expect(fromFile.stderr).toContain(`EVALBOX_API_RATE_BURST in ${file} must be an integer >= 1, got "-1"`);

    const unknown = evalbox(['config'], { EVALBOX_CONFIG_FILE: configFile({ NOT_EVALBOX: 1 }) });
    expect(unknown.stderr).toContain('"NOT_EVALBOX" is not an evalbox setting');
  });

  it('--help lists every setting of the process, and every listed flag is accepted', () => {
    for (const scope of ['api', 'relay', 'scorer'] as const) {
      const help = evalbox([scope, '--help']).stdout;
      const settings = describeConfig({}, {}).filter((s) => scopeOf(s.env) === scope);
      expect(settings.filter((s) => !help.includes(s.env)).map((s) => s.env)).toEqual([]);
      const flags = [...help.matchAll(/^ {2}(--[a-z-]+) /gm)].map((m) => m[1] as string).filter((f) => f !== '--json');
      expect(flags.length).toBeGreaterThan(5);
      const accepted = evalbox([scope, ...flags.flatMap((f) => [f, '1']), '--help']);
      expect({ scope, status: accepted.status, stderr: accepted.stderr }).toEqual({ scope, status: 0, stderr: '' });
    }
  });
});
