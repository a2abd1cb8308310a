// Judge endpoint state, read from the scorers' own admin /metrics (Prometheus text format): the
// circuit state, the adaptive concurrency limit, whether the endpoint is throttled after a 429, and
// how many requests it answered with 429. The console holds no judge of its own.

export interface JudgeEndpointState {
  /** The scorer's metrics URL the numbers come from. */
  source: string;
  endpoint: string;
  circuit: 'closed' | 'half-open' | 'open' | 'unknown';
  concurrencyLimit: number | null;
  throttled: boolean;
  rateLimited: number;
  requests: number;
}

export interface ScrapeResult {
  endpoints: JudgeEndpointState[];
  /** Per source that could not be read, why. */
  failures: { source: string; error: string }[];
  /** Consumer time lag per topic/partition (seconds), when the scorers export it. */
  timeLag: Map<string, number>;
}

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses the sample lines of the Prometheus text format (comments and malformed lines are skipped). */
export function parsePrometheusText(text: string): Sample[] {
  const samples: Sample[] = [];
  const line = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)/;
  const label = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
  for (const raw of text.split('\n')) {
    if (raw.startsWith('#')) continue;
    const match = line.exec(raw);
    if (!match) continue;
    const labels: Record<string, string> = {};
    for (const l of (match[3] ?? '').matchAll(label)) labels[l[1] as string] = (l[2] as string).replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
    const value = Number(match[4]);
    if (!Number.isNaN(value)) samples.push({ name: match[1] as string, labels, value });
  }
  return samples;
}

const CIRCUIT = ['closed', 'half-open', 'open'] as const;

export function judgeStateFrom(source: string, samples: Sample[]): JudgeEndpointState[] {
  const endpoints = new Map<string, JudgeEndpointState>();
  const get = (endpoint: string): JudgeEndpointState => {
    let state = endpoints.get(endpoint);
    if (!state) {
      state = { source, endpoint, circuit: 'unknown', concurrencyLimit: null, throttled: false, rateLimited: 0, requests: 0 };
      endpoints.set(endpoint, state);
    }
    return state;
  };
  for (const s of samples) {
    const endpoint = s.labels.endpoint;
    if (endpoint === undefined) continue;
    if (s.name === 'evalbox_judge_circuit_state') get(endpoint).circuit = CIRCUIT[s.value] ?? 'unknown';
    else if (s.name === 'evalbox_judge_concurrency_limit') get(endpoint).concurrencyLimit = s.value;
    else if (s.name === 'evalbox_judge_throttled') get(endpoint).throttled = s.value > 0;
    else if (s.name === 'evalbox_judge_request_duration_seconds_count') {
      const state = get(endpoint);
      state.requests += s.value;
      if (s.labels.outcome === 'rate_limited') state.rateLimited += s.value;
    }
  }
  return [...endpoints.values()];
}

/** Reads every configured scorer's /metrics (each bounded by `timeoutMs`). */
export async function scrapeScorers(urls: string[], timeoutMs = 2_000): Promise<ScrapeResult> {
  const result: ScrapeResult = { endpoints: [], failures: [], timeLag: new Map() };
  await Promise.all(
    urls.map(async (source) => {
      try {
        const response = await fetch(source, { signal: AbortSignal.timeout(timeoutMs) });
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        const samples = parsePrometheusText(await response.text());
        result.endpoints.push(...judgeStateFrom(source, samples));
        for (const s of samples) {
          if (s.name !== 'evalbox_consumer_lag_seconds') continue;
          const key = `${s.labels.topic}/${s.labels.partition}`;
          result.timeLag.set(key, Math.max(result.timeLag.get(key) ?? 0, s.value));
        }
      } catch (error) {
        result.failures.push({ source, error: (error as Error).message });
      }
    }),
  );
  result.endpoints.sort((a, b) => a.endpoint.localeCompare(b.endpoint) || a.source.localeCompare(b.source));
  return result;
}
