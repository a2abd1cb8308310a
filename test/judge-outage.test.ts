// A provider outage against the fake judge over real HTTP: 500s open the circuit, calls are then
// turned away without reaching the provider (RetryableError with the time to half-open, the
// consumer's cue to pause), a probe after the cool-down closes it again; a 429 holds the
// endpoint until Retry-After and halves its concurrency. Metrics follow the events.
import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import { Registry } from 'prom-client';
import { RetryableError } from '../src/errors.js';
import { loadJudgeConfig, type JudgeConfig } from '../consumers/judge/config.js';
import { createJudge, isProviderPressure, type Judge } from '../consumers/judge/judge.js';
import { initJudgeGauges, registerJudgeMetrics } from '../consumers/judge/metrics.js';
import { startFakeJudge, type FakeJudge } from '../src/fake-judge/server.js';
import { waitFor } from './helpers.js';

const sample = { prompt: 'Is the store open on Sundays?', response: 'Yes, from 10:00 to 16:00.' };
const variant = (i: number) => ({ ...sample, response: `${sample.response} #${i}` });

function configFor(url: string, endpoint: Record<string, unknown>): JudgeConfig {
  const config = loadJudgeConfig({ EVALBOX_JUDGE_CONFIG: '/judge.json' }, () =>
    JSON.stringify({
      endpoints: [{ name: 'fake', baseUrl: url, model: 'fake-judge-1', timeoutMs: 2000, maxConcurrency: 8, ...endpoint }],
      prices: { 'fake-judge-1': { inputPerMTok: 1, outputPerMTok: 2 } },
    }),
  );
  if (!config) throw new Error('no config');
  return config;
}

/** Sums a metric's samples matching `labels`; `name` may be a histogram's `_count` series. */
async function metric(registry: Registry, name: string, labels: Record<string, string> = {}): Promise<number> {
  const all = await registry.getMetricsAsJSON();
  const found = all.find((m) => m.name === name || m.name === name.replace(/_count$/, ''));
  const values = (found?.values ?? []) as { value: number; labels: Record<string, string | number>; metricName?: string }[];
  return values
    .filter((v) => (v.metricName ?? found?.name) === name)
    .filter((v) => Object.entries(labels).every(([k, want]) => String(v.labels[k]) === want))
    .reduce((sum, v) => sum + v.value, 0);
}

describe('guarantee 6: a provider outage is not a DLT flood', () => {
  let fake: FakeJudge;
  let judge: Judge | undefined;

  beforeAll(async () => {
    fake = await startFakeJudge({ latencyMs: 5 });
  });
  afterEach(async () => {
    await judge?.close();
    judge = undefined;
    fake.control({ mode: 'ok', latencyMs: 5, fraction: 1, retryAfterSeconds: 1, concurrencyLimit: 0 });
    fake.resetStats();
  });
  afterAll(async () => fake.close());

  it('guarantee 6: an error burst opens the circuit; calls are then turned away without reaching the provider, with retryAfterMs; a probe after the cool-down closes it', async () => {
    judge = createJudge({ config: configFor(fake.url, { breaker: { minCalls: 4, failureRate: 0.5, coolDownMs: 600, windowSize: 20 } }) });
    const registry = new Registry();
    registerJudgeMetrics(registry, judge.events);
    initJudgeGauges(
      registry,
      judge.endpointStates().map((s) => ({ endpoint: s.endpoint, limit: s.limit })),
    );
    const log: string[] = [];
    judge.events.on('judge:circuitOpened', () => log.push('opened'));
    judge.events.on('judge:circuitHalfOpen', () => log.push('half_open'));
    judge.events.on('judge:circuitClosed', () => log.push('closed'));

    fake.control({ mode: 'error-burst' });
    for (let i = 0; i < 4; i++) await expect(judge.score('judge_relevance', variant(i))).rejects.toMatchObject({ code: 'JUDGE_SERVER_ERROR' });
    expect(log).toEqual(['opened']);
    expect(await metric(registry, 'evalbox_judge_circuit_state', { endpoint: 'fake' })).toBe(2);

    // The outage goes on, and a consumer would keep trying: nothing reaches the provider, and
    // every refusal is retryable with a hint, never permanent (so nothing goes to the DLT).
    const pressure = judge.pressure(['judge_relevance']);
    expect(pressure.pause).toBe(true);
    expect(pressure.retryAfterMs).toBeGreaterThan(0);
    expect(pressure.retryAfterMs).toBeLessThanOrEqual(600);
    for (let i = 0; i < 50; i++) {
      const error = await judge.score('judge_relevance', variant(100 + i)).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(RetryableError);
      expect(error).toMatchObject({ code: 'JUDGE_CIRCUIT_OPEN' });
      expect((error as RetryableError).retryAfterMs).toBeGreaterThan(0);
      expect(isProviderPressure(error)).toBe(true);
    }
    expect(fake.stats().total).toBe(4);

    // Recovery: the provider is back; after the cool-down one probe goes through and closes it.
    fake.control({ mode: 'ok' });
    await waitFor(() => log.includes('half_open'), { what: 'the half-open event', timeoutMs: 5000 });
    expect(judge.pressure().pause).toBe(false);
    expect(await judge.score('judge_relevance', variant(1000))).toMatchObject({ status: 'COMPLETED' });
    expect(log).toEqual(['opened', 'half_open', 'closed']);
    expect(judge.endpointState()).toMatchObject({ open: false, circuit: 'closed' });
    expect(fake.stats().total).toBe(5);

    expect(await metric(registry, 'evalbox_judge_circuit_state', { endpoint: 'fake' })).toBe(0);
    expect(await metric(registry, 'evalbox_judge_retries_total', { endpoint: 'fake', class: 'server_error' })).toBe(4);
    expect(await metric(registry, 'evalbox_judge_retries_total', { endpoint: 'fake', class: 'circuit_open' })).toBe(50);
    expect(await metric(registry, 'evalbox_judge_request_duration_seconds_count', { endpoint: 'fake', outcome: 'server_error' })).toBe(4);
    expect(await metric(registry, 'evalbox_judge_request_duration_seconds_count', { endpoint: 'fake', outcome: 'ok' })).toBe(1);
    expect(await metric(registry, 'evalbox_judge_tokens_total', { model: 'fake-judge-1', kind: 'input' })).toBeGreaterThan(0);
    expect(await metric(registry, 'evalbox_judge_cost_usd_total', { model: 'fake-judge-1' })).toBeGreaterThan(0);
  });

  it('guarantee 6: a 429 holds the endpoint until Retry-After and halves its concurrency; calls during the hold do not reach the provider', async () => {
    judge = createJudge({ config: configFor(fake.url, { maxConcurrency: 8, limiter: { maxQueueWaitMs: 100 } }) });
    const registry = new Registry();
    registerJudgeMetrics(registry, judge.events);
    const throttled: number[] = [];
    judge.events.on('judge:throttled', (e) => throttled.push(e.retryAfterMs));

    fake.control({ mode: 'rate-limit', retryAfterSeconds: 1, requests: 1 });
    const first = await judge.score('judge_relevance', variant(1)).catch((e: unknown) => e);
    expect(first).toMatchObject({ code: 'JUDGE_RATE_LIMITED', retryAfterMs: 1000 });
    expect(throttled).toEqual([1000]);
    expect(judge.endpointState()).toMatchObject({ limit: 4 });
    expect(judge.pressure().pause).toBe(true);

    // During the hold (longer than this endpoint's 100 ms wait bound): refused at once.
    const during = await judge.score('judge_relevance', variant(2)).catch((e: unknown) => e);
    expect(during).toBeInstanceOf(RetryableError);
    expect(during).toMatchObject({ code: 'JUDGE_THROTTLED' });
    expect((during as RetryableError).retryAfterMs).toBeGreaterThan(500);
    expect(fake.stats().total).toBe(1);
    expect(await metric(registry, 'evalbox_judge_concurrency_limit', { endpoint: 'fake' })).toBe(4);
    expect(await metric(registry, 'evalbox_judge_throttled', { endpoint: 'fake' })).toBe(1);

    await waitFor(() => !judge?.pressure().pause, { what: 'the hold to end', timeoutMs: 3000 });
    expect(await judge.score('judge_relevance', variant(3))).toMatchObject({ status: 'COMPLETED' });
    expect(fake.stats().total).toBe(2);
    expect(await metric(registry, 'evalbox_judge_throttled', { endpoint: 'fake' })).toBe(0);
  });

  it('guarantee 6: callers that arrive during a short hold wait for it and then succeed, without extra requests', async () => {
    judge = createJudge({ config: configFor(fake.url, { maxConcurrency: 4 }) });
    fake.control({ mode: 'rate-limit', retryAfterSeconds: 1, requests: 1 });
    await expect(judge.score('judge_relevance', variant(1))).rejects.toMatchObject({ code: 'JUDGE_RATE_LIMITED' });
    const started = Date.now();
    const outcomes = await Promise.all([2, 3, 4, 5, 6].map((i) => judge!.score('judge_relevance', variant(i))));
    expect(Date.now() - started).toBeGreaterThanOrEqual(850);
    expect(outcomes.every((o) => o.status === 'COMPLETED')).toBe(true);
    expect(fake.stats()).toMatchObject({ total: 6, byOutcome: { rate_limited: 1, ok: 5 } });
    // The limit was halved to 2: no more than two ran at once after the hold.
    expect(fake.stats().maxInFlight).toBeLessThanOrEqual(2);
  });

  it('against a provider that caps concurrency, AIMD settles below the cap instead of failing calls', async () => {
    fake.control({ concurrencyLimit: 3, retryAfterSeconds: 0, latencyMs: 20 });
    judge = createJudge({ config: configFor(fake.url, { maxConcurrency: 12, limiter: { defaultRetryAfterMs: 50 } }) });
    let rateLimited = 0;
    const run = async (i: number): Promise<void> => {
      for (;;) {
        try {
          await judge?.score('judge_relevance', variant(i));
          return;
        } catch (error) {
          if (!isProviderPressure(error)) throw error;
          rateLimited++;
          await new Promise((resolve) => setTimeout(resolve, (error as RetryableError).retryAfterMs ?? 50));
        }
      }
    };
    await Promise.all(Array.from({ length: 120 }, (_, i) => run(i)));
    expect(fake.stats().byOutcome.ok).toBe(120);
    // The AIMD sawtooth probes the cap about once per few windows (≈28 429s for 120 calls here);
    // 120 callers retrying without it would collect hundreds.
    expect(rateLimited).toBeLessThan(60);
    expect(judge.endpointState().limit).toBeLessThanOrEqual(6);
  });
});
