// The typed configuration (src/config.ts): flags win over EVALBOX_* variables, which win over
// the defaults; a bad value is a ConfigError naming the flag and the variable.
import { describe, expect, it } from '@jest/globals';
import { DEFAULT_TOPICS, loadConfig, requireSetting } from '../../src/config.js';
import { ConfigError } from '../../src/errors.js';

describe('configuration', () => {
  it('defaults when nothing is set', () => {
    const config = loadConfig({}, {});
    expect(config.topics).toEqual(DEFAULT_TOPICS);
    expect(config.relay).toMatchObject({ batchSize: 2000, wakeup: 'notify', leaseTtlMs: 3000, heartbeatMs: 1000, retentionHours: 72 });
    expect(config.api).toMatchObject({ port: 8080, bodyLimitBytes: 1024 * 1024, batchLimit: 100 });
  });

  it('a flag wins over the environment, which wins over the default', () => {
    const env = { EVALBOX_RELAY_BATCH_SIZE: '500', EVALBOX_TOPIC_EVENTS: 'from-env', KAFKA_BROKERS: 'b:9092' };
    const config = loadConfig(env, { 'batch-size': '50' });
    expect(config.relay.batchSize).toBe(50);
    expect(config.topics.events).toBe('from-env');
    expect(config.kafkaBrokers).toBe('b:9092');
    expect(loadConfig({ EVALBOX_CACHE_DIR: '/c', XDG_CACHE_HOME: '/x' }).cacheDir).toBe('/c');
    expect(loadConfig({ XDG_CACHE_HOME: '/x' }).cacheDir).toBe('/x/evalbox');
  });

  it('a bad value is a ConfigError that names the flag and the variable', () => {
    expect(() => loadConfig({ EVALBOX_RELAY_BATCH_SIZE: '0' })).toThrow(ConfigError);
    expect(() => loadConfig({ EVALBOX_RELAY_BATCH_SIZE: '1.5' })).toThrow(
      'EVALBOX_RELAY_BATCH_SIZE must be an integer >= 1, got "1.5" (--batch-size / EVALBOX_RELAY_BATCH_SIZE)',
    );
    expect(() => loadConfig({}, { wakeup: 'sometimes' })).toThrow('--wakeup must be one of notify, poll, got "sometimes" (--wakeup / EVALBOX_RELAY_WAKEUP)');
    expect(() => requireSetting('', 'DATABASE_URL')).toThrow(/DATABASE_URL is not set/);
  });
});
