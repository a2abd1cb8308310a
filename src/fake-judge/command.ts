// `evalbox fake-judge`: runs the scripted OpenAI-compatible judge server until SIGTERM/SIGINT,
// for the demo and for tests or benchmarks that want it in a process of its own.
import { parse, UsageError, type Command } from '../cli/args.js';
import { FAKE_JUDGE_MODES, parseLatency, startFakeJudge, type FakeJudgeMode, type FakeJudgeOptions } from './server.js';

function number(name: string, value: string | undefined, min: number, max = Number.POSITIVE_INFINITY): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isFinite(n) || n < min || n > max) throw new UsageError(`--${name} must be a number in [${min}, ${max}], got "${value}"`);
  return n;
}

export const fakeJudgeCommand: Command = {
  name: 'fake-judge',
  summary: 'run a scripted OpenAI-compatible judge server (tests, demo, benchmarks)',
  help: `Usage: evalbox fake-judge [--port P] [--latency-ms 200 | --latency-ms 50-300] [--mode MODE] [--seed N] ...

Serves POST /v1/chat/completions and GET /v1/models like an OpenAI-compatible provider, with a
deterministic verdict per content (same request content, same score), in the JSON shape the
client asked for. Point evalbox at it with EVALBOX_JUDGE_BASE_URL=http://HOST:P and any
EVALBOX_JUDGE_MODEL.

Modes (--mode, or at run time: POST /_control {"mode": ..., "durationMs": ..., ...}):
  ok                  answer every request (default)
  rate-limit          429 with Retry-After (--retry-after seconds)
  error-burst         500 (or --error-status); with durationMs in /_control, for that long only
  hang                hold the request (--hang-ms, default 10 min) past the client's timeout
  malformed           200 with content that is not JSON
  no-response-format  400 {error:{param:"response_format"}} when response_format is sent
  bad-request         400 context_length_exceeded
--fraction F applies a fault mode to that share of requests only (seeded draw).

Control and counters:
  GET  /_control, POST /_control {mode, latencyMs, fraction, retryAfterSeconds, retryAfterFormat,
                                  errorStatus, hangMs, concurrencyLimit, durationMs, requests, seed}
                 (durationMs / requests: the mode reverts to ok after that long / that many faults)
  GET  /_stats   total, inFlight, maxInFlight, byMode, byOutcome, byContentHash, duplicates
  GET  /_requests  every request: contentHash, rubricHash, outcome, startedAt, endedAt, clientGone,
                 client (its x-judge-client header)
  POST /_stats/reset

Options:
  --port P               port (default 8089; 0 picks a free one)
  --host H               interface (default 127.0.0.1)
  --latency-ms L         fixed milliseconds, or a range MIN-MAX (default 0)
  --mode MODE            one of the modes above
  --seed N               seed of the verdicts, latency and fault draws (default 1)
  --fraction F           share of requests a fault mode applies to (default 1)
  --retry-after S        Retry-After seconds of a 429 (default 1)
  --error-status N       status of error-burst answers (default 500)
  --hang-ms MS           how long a hang lasts (default 600000)
  --concurrency-limit N  429 beyond N requests in flight (default 0 = unlimited)
  --model NAME           model name listed by /v1/models (default fake-judge-1)
  --api-key KEY          require Authorization: Bearer KEY
  -h, --help             this help`,
  async run(argv) {
    const { values } = parse(argv, {
      port: { type: 'string' },
      host: { type: 'string' },
      'latency-ms': { type: 'string' },
      mode: { type: 'string' },
      seed: { type: 'string' },
      fraction: { type: 'string' },
      'retry-after': { type: 'string' },
      'error-status': { type: 'string' },
      'hang-ms': { type: 'string' },
      'concurrency-limit': { type: 'string' },
      model: { type: 'string' },
      'api-key': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    });
    if (values.help) {
      process.stdout.write(`${this.help}\n`);
      return 0;
    }
    if (values.mode !== undefined && !FAKE_JUDGE_MODES.includes(values.mode as FakeJudgeMode))
      throw new UsageError(`--mode must be one of ${FAKE_JUDGE_MODES.join(', ')}, got "${values.mode}"`);
    let latencyMs: FakeJudgeOptions['latencyMs'];
    try {
      latencyMs = values['latency-ms'] === undefined ? undefined : parseLatency(values['latency-ms']);
    } catch (error) {
      throw new UsageError(`--latency-ms: ${(error as Error).message}`);
    }
    const options: FakeJudgeOptions = {
      port: number('port', values.port, 0, 65535) ?? 8089,
      host: values.host ?? '127.0.0.1',
      ...(latencyMs === undefined ? {} : { latencyMs }),
      ...(values.mode ? { mode: values.mode as FakeJudgeMode } : {}),
      ...(values.model ? { model: values.model } : {}),
      ...(values['api-key'] ? { apiKey: values['api-key'] } : {}),
    };
    const numeric: [keyof FakeJudgeOptions, string, number, number?][] = [
      ['seed', 'seed', 0],
      ['fraction', 'fraction', 0, 1],
      ['retryAfterSeconds', 'retry-after', 0],
      ['errorStatus', 'error-status', 400, 599],
      ['hangMs', 'hang-ms', 0],
      ['concurrencyLimit', 'concurrency-limit', 0],
    ];
    for (const [key, flag, min, max] of numeric) {
      const value = number(flag, (values as Record<string, string | boolean | undefined>)[flag] as string | undefined, min, max);
      if (value !== undefined) (options as Record<string, unknown>)[key] = value;
    }

    const judge = await startFakeJudge(options);
    process.stdout.write(`evalbox fake-judge listening on ${judge.url}\n`);
    await new Promise<void>((resolve) => {
      process.once('SIGTERM', () => resolve());
      process.once('SIGINT', () => resolve());
    });
    await judge.close();
    return 0;
  },
};
