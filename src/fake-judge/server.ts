// A scripted OpenAI-compatible judge for tests, the demo and benchmarks. Serves
// POST /v1/chat/completions and GET /v1/models with a deterministic verdict derived from the
// request (the same content always gets the same score), in the shape the client asked for
// (response_format json_schema, or the JSON Schema found in the prompt for plain JSON), after a
// fixed or random latency. Faults are switchable at run time through POST /_control: 429 with
// Retry-After, 500 bursts, hangs, malformed content, refusal of response_format, 400s. It counts
// what it receives (GET /_stats) so tests can assert on calls, e.g. "paid once", and keeps a log
// of every request (GET /_requests: content, rubric, outcome, times, whether the client was still
// there when it was answered) so a test can tell why a content was paid for twice.
import { createHash } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import type { AddressInfo } from 'node:net';
import { serve, type ServerType } from '@hono/node-server';
import { Hono, type Context } from 'hono';
import { seededRandom } from '../random.js';

export const FAKE_JUDGE_MODES = ['ok', 'rate-limit', 'error-burst', 'hang', 'malformed', 'no-response-format', 'bad-request'] as const;
export type FakeJudgeMode = (typeof FAKE_JUDGE_MODES)[number];

export interface FakeJudgeBehaviour {
  mode: FakeJudgeMode;
  /** Fixed milliseconds, or [min, max] drawn uniformly (seeded). */
  latencyMs: number | [number, number];
  /** Share of requests a fault mode applies to (seeded draw); the others are answered normally. */
  fraction: number;
  /** Retry-After of a 429 (and of a 503 when set for error-burst): seconds, an HTTP date, or absent. */
  retryAfterSeconds: number;
  retryAfterFormat: 'seconds' | 'date' | 'none';
  /** Status of error-burst answers (500 by default). */
  errorStatus: number;
  /** How long 'hang' holds a request before answering normally. */
  hangMs: number;
  /** Answer 429 once more than this many requests are in flight (0 = no limit), in every mode. */
  concurrencyLimit: number;
  /** When set, the mode reverts to 'ok' this long after the control call that set it. */
  durationMs?: number;
  /** When set, the fault applies to this many more requests, then the mode reverts to 'ok'. */
  requests?: number;
  model: string;
  seed: number;
  /**
   * Answers scripted by content: a request whose first user message contains `contains` gets
   * this reasoning instead of the deterministic one, and/or, with `echoInput`, an answer that
   * first echoes the evaluated text as prose and then gives the real verdict (an injection test),
   * and/or usage token counts of `tokens` (e.g. beyond a 32-bit column).
   */
  scripted: ScriptedAnswer[];
  /** Modes for the next requests, one each, before `mode` applies again (e.g. malformed then error-burst). */
  sequence: FakeJudgeMode[];
}

export interface ScriptedAnswer {
  contains: string;
  reasoning?: string;
  echoInput?: boolean;
  tokens?: number;
}

export interface FakeJudgeOptions extends Partial<FakeJudgeBehaviour> {
  port?: number;
  host?: string;
  /** When set, requests must carry `Authorization: Bearer <apiKey>`. */
  apiKey?: string;
  /**
   * Called as each paid answer (one with usage) is sent: lets a test act at exactly that moment,
   * e.g. kill -9 the caller after the provider answered and before the caller stored the verdict.
   */
  onAnswered?: (answer: { contentHash: string; total: number }) => void;
}

export type FakeJudgeOutcome =
  'ok' | 'rate_limited' | 'server_error' | 'hang' | 'malformed' | 'response_format_rejected' | 'bad_request' | 'unauthorized' | 'invalid';

export interface FakeJudgeStats {
  total: number;
  inFlight: number;
  maxInFlight: number;
  byMode: Partial<Record<FakeJudgeMode, number>>;
  byOutcome: Partial<Record<FakeJudgeOutcome, number>>;
  /** Requests per distinct request content (sha256 of model + messages). */
  byContentHash: Record<string, number>;
  distinctContent: number;
  /** Requests whose exact content had been received before. */
  duplicates: number;
  byResponseFormat: { json_schema: number; plain: number };
}

/** One chat completion request as the fake judge saw it (GET /_requests). */
export interface FakeJudgeRequestRecord {
  /** 1-based arrival number. */
  n: number;
  /** sha256 of model + messages, as in byContentHash (the same content means the same verdict). */
  contentHash: string;
  /** sha256 of the system message(s): which rubric (dimension) asked. */
  rubricHash: string;
  outcome: FakeJudgeOutcome;
  /** Arrival and answer, ms since the epoch. */
  startedAt: number;
  endedAt: number;
  /** The client had closed its connection before the answer was ready (killed, timed out, aborted). */
  clientGone: boolean;
  /** Who sent it, when the caller names itself in an `x-judge-client` header (e.g. one per scorer replica). */
  client: string;
}

export interface FakeJudge {
  /** The base URL to give a client (`{url}/v1/chat/completions`). */
  url: string;
  port: number;
  /** Changes behaviour now (the in-process twin of POST /_control); returns the new behaviour. */
  control(patch: Partial<FakeJudgeBehaviour>): FakeJudgeBehaviour;
  behaviour(): FakeJudgeBehaviour;
  stats(): FakeJudgeStats;
  /** Every request since the last reset (at most REQUEST_LOG_LIMIT), oldest first. */
  requestLog(): FakeJudgeRequestRecord[];
  resetStats(): void;
  close(): Promise<void>;
}

interface ChatRequest {
  model?: string;
  messages: { role: string; content: unknown }[];
  response_format?: { type?: string; json_schema?: { schema?: JsonSchema } };
}

interface JsonSchema {
  properties?: Record<string, { type?: string; enum?: unknown[]; minimum?: number; maximum?: number }>;
  required?: string[];
}

const DEFAULTS: FakeJudgeBehaviour = {
  mode: 'ok',
  latencyMs: 0,
  fraction: 1,
  retryAfterSeconds: 1,
  retryAfterFormat: 'seconds',
  errorStatus: 500,
  hangMs: 10 * 60_000,
  concurrencyLimit: 0,
  model: 'fake-judge-1',
  seed: 1,
  scripted: [],
  sequence: [],
};

/** "200" or "50-300" → a latency setting. */
export function parseLatency(text: string): number | [number, number] {
  const range = /^(\d+)\s*-\s*(\d+)$/.exec(text.trim());
  if (range) {
    const min = Number(range[1]);
    const max = Number(range[2]);
    if (max < min) throw new RangeError(`latency range ${text}: max below min`);
    return [min, max];
  }
  const fixed = Number(text);
  if (!Number.isFinite(fixed) || fixed < 0) throw new RangeError(`latency "${text}" is not a number of milliseconds or a range like 50-300`);
  return fixed;
}

/** The request log keeps this many records at most (about 200 bytes each), then stops growing. */
export const REQUEST_LOG_LIMIT = 1_000_000;

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');
const tokens = (chars: number) => Math.max(1, Math.ceil(chars / 4));
const textOf = (content: unknown): string => (typeof content === 'string' ? content : JSON.stringify(content ?? ''));

/** The schema the client wants: from response_format, else the last ```json block of the prompt. */
function wantedSchema(request: ChatRequest): JsonSchema | undefined {
  const fromFormat = request.response_format?.json_schema?.schema;
  if (fromFormat) return fromFormat;
  for (const message of [...request.messages].reverse()) {
    const blocks = [...textOf(message.content).matchAll(/```json\s*([\s\S]*?)```/g)];
    const last = blocks.at(-1)?.[1];
    if (!last) continue;
    try {
      return JSON.parse(last) as JsonSchema;
    } catch {
      // not a schema; keep looking
    }
  }
  return undefined;
}

/** A verdict that depends only on the request's first user message, the model and the seed. */
function verdictFor(request: ChatRequest, seed: number): Record<string, unknown> {
  const user = request.messages.find((m) => m.role === 'user');
  const digest = sha256(`${seed}\u0000${request.model ?? ''}\u0000${textOf(user?.content)}`);
  const n = parseInt(digest.slice(0, 8), 16);
  const schema = wantedSchema(request);
  const verdict: Record<string, unknown> = {
    reasoning: `Deterministic fake verdict for content ${digest.slice(0, 12)}: the response was read against the criterion.`,
  };
  const props = schema?.properties ?? {};
  let placed = false;
  for (const [name, prop] of Object.entries(props)) {
    if (name === 'reasoning') continue;
    if (Array.isArray(prop.enum) && prop.enum.length > 0) {
      verdict[name] = prop.enum[n % prop.enum.length];
      placed = true;
    } else if (prop.type === 'integer' || prop.type === 'number') {
      const min = prop.minimum ?? 1;
      const max = prop.maximum ?? 5;
      verdict[name] = min + (n % (max - min + 1));
      placed = true;
    }
  }
  if (!placed) verdict.score = 1 + (n % 5);
  return verdict;
}

function openAiError(
  c: Context,
  status: number,
  error: { message: string; type: string; param?: string | null; code?: string | null },
  headers: Record<string, string> = {},
) {
  for (const [k, v] of Object.entries(headers)) c.header(k, v);
  return c.json({ error: { param: null, code: null, ...error } }, status as 429);
}

export async function startFakeJudge(options: FakeJudgeOptions = {}): Promise<FakeJudge> {
  const { port: wantedPort = 0, host = '127.0.0.1', apiKey, onAnswered, ...initial } = options;
  let behaviour: FakeJudgeBehaviour = { ...DEFAULTS, ...initial };
  let random = seededRandom(behaviour.seed);
  let revertTimer: NodeJS.Timeout | undefined;
  const closing = new AbortController();
  // Every request waiting on a latency or a hang listens to it.
  setMaxListeners(0, closing.signal);
  let stats: FakeJudgeStats;
  let requestLog: FakeJudgeRequestRecord[] = [];
  const resetStats = () => {
    requestLog = [];
    stats = {
      total: 0,
      inFlight: stats?.inFlight ?? 0,
      maxInFlight: 0,
      byMode: {},
      byOutcome: {},
      byContentHash: {},
      distinctContent: 0,
      duplicates: 0,
      byResponseFormat: { json_schema: 0, plain: 0 },
    };
  };
  resetStats();

  // The request being answered, filled in as answer() learns its content and outcome.
  type PendingRecord = Partial<FakeJudgeRequestRecord> & Pick<FakeJudgeRequestRecord, 'n' | 'startedAt' | 'client'>;
  const count = (outcome: FakeJudgeOutcome, record: PendingRecord) => {
    stats.byOutcome[outcome] = (stats.byOutcome[outcome] ?? 0) + 1;
    record.outcome = outcome;
  };
  // Ends early when the server closes or the client goes away (a client that timed out).
  const wait = (ms: number, client?: AbortSignal) =>
    new Promise<void>((resolve) => {
      const signals = client ? [closing.signal, client] : [closing.signal];
      if (ms <= 0 || signals.some((s) => s.aborted)) return resolve();
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        for (const s of signals) s.removeEventListener('abort', done);
        resolve();
      }
      for (const s of signals) s.addEventListener('abort', done, { once: true });
    });
  const latency = () => {
    const l = behaviour.latencyMs;
    return Array.isArray(l) ? l[0] + Math.round(random() * (l[1] - l[0])) : l;
  };

  function control(patch: Partial<FakeJudgeBehaviour>): FakeJudgeBehaviour {
    if (patch.mode !== undefined && !FAKE_JUDGE_MODES.includes(patch.mode))
      throw new RangeError(`unknown mode "${patch.mode}" (one of ${FAKE_JUDGE_MODES.join(', ')})`);
    if (patch.fraction !== undefined && !(patch.fraction >= 0 && patch.fraction <= 1)) throw new RangeError('fraction must be within 0..1');
    if (patch.requests !== undefined && !(Number.isInteger(patch.requests) && patch.requests > 0)) throw new RangeError('requests must be a positive integer');
    const { durationMs, ...rest } = patch;
    behaviour = { ...behaviour, ...rest };
    delete behaviour.durationMs;
    // A new mode without a request budget is open-ended.
    if (patch.mode !== undefined && patch.requests === undefined) delete behaviour.requests;
    if (patch.seed !== undefined) random = seededRandom(patch.seed);
    if (revertTimer) clearTimeout(revertTimer);
    revertTimer = undefined;
    if (durationMs !== undefined && durationMs > 0) {
      behaviour.durationMs = durationMs;
      revertTimer = setTimeout(() => {
        behaviour = { ...behaviour, mode: 'ok' };
        delete behaviour.durationMs;
      }, durationMs);
      revertTimer.unref();
    }
    return { ...behaviour };
  }

  const app = new Hono();

  app.get('/v1/models', (c) => c.json({ object: 'list', data: [{ id: behaviour.model, object: 'model', created: 0, owned_by: 'evalbox-fake-judge' }] }));

  app.post('/v1/chat/completions', async (c) => {
    stats.total++;
    stats.inFlight++;
    stats.maxInFlight = Math.max(stats.maxInFlight, stats.inFlight);
    // Reading the signal now makes the server watch the connection: it aborts if the client goes away.
    const clientSignal = c.req.raw.signal;
    const record: PendingRecord = { n: stats.total, startedAt: Date.now(), client: c.req.header('x-judge-client') ?? '' };
    try {
      return await answer(c, record);
    } finally {
      stats.inFlight--;
      const { contentHash, rubricHash, outcome } = record;
      if (contentHash !== undefined && rubricHash !== undefined && outcome !== undefined && requestLog.length < REQUEST_LOG_LIMIT)
        requestLog.push({
          n: record.n,
          contentHash,
          rubricHash,
          outcome,
          startedAt: record.startedAt,
          endedAt: Date.now(),
          clientGone: clientSignal.aborted,
          client: record.client,
        });
    }
  });

  async function answer(c: Context, record: PendingRecord) {
    const mode = behaviour.sequence.shift() ?? behaviour.mode;
    stats.byMode[mode] = (stats.byMode[mode] ?? 0) + 1;
    if (apiKey && c.req.header('authorization') !== `Bearer ${apiKey}`) {
      count('unauthorized', record);
      return openAiError(c, 401, { message: 'Incorrect API key provided.', type: 'invalid_request_error', code: 'invalid_api_key' });
    }
    let request: ChatRequest;
    try {
      request = await c.req.json<ChatRequest>();
      if (!Array.isArray(request?.messages) || request.messages.length === 0) throw new TypeError('messages must be a non-empty array');
    } catch (error) {
      count('invalid', record);
      return openAiError(c, 400, { message: `Invalid request: ${(error as Error).message}`, type: 'invalid_request_error', param: 'messages' });
    }
    const contentHash = sha256(JSON.stringify([request.model ?? '', request.messages]));
    record.contentHash = contentHash;
    record.rubricHash = sha256(JSON.stringify(request.messages.filter((m) => m.role === 'system'))).slice(0, 16);
    const seen = stats.byContentHash[contentHash] ?? 0;
    stats.byContentHash[contentHash] = seen + 1;
    if (seen === 0) stats.distinctContent++;
    else stats.duplicates++;
    const wantsSchema = request.response_format?.type === 'json_schema';
    stats.byResponseFormat[wantsSchema ? 'json_schema' : 'plain']++;

    const retryAfter = (): Record<string, string> => {
      if (behaviour.retryAfterFormat === 'none') return {};
      if (behaviour.retryAfterFormat === 'date') return { 'retry-after': new Date(Date.now() + behaviour.retryAfterSeconds * 1000).toUTCString() };
      return { 'retry-after': String(behaviour.retryAfterSeconds) };
    };
    if (behaviour.concurrencyLimit > 0 && stats.inFlight > behaviour.concurrencyLimit) {
      count('rate_limited', record);
      return openAiError(c, 429, { message: 'Rate limit reached: too many concurrent requests.', type: 'requests', code: 'rate_limit_exceeded' }, retryAfter());
    }

    // Capability, not a fault: a server without structured outputs rejects every json_schema request.
    if (mode === 'no-response-format' && request.response_format !== undefined) {
      await wait(latency());
      count('response_format_rejected', record);
      return openAiError(c, 400, {
        message: "Invalid parameter: 'response_format' of type 'json_schema' is not supported with this model.",
        type: 'invalid_request_error',
        param: 'response_format',
        code: 'unsupported_parameter',
      });
    }
    const fault = mode !== 'ok' && mode !== 'no-response-format' && random() < behaviour.fraction;
    if (fault && behaviour.requests !== undefined) {
      behaviour.requests--;
      if (behaviour.requests <= 0) {
        behaviour = { ...behaviour, mode: 'ok' };
        delete behaviour.requests;
      }
    }
    if (fault && mode === 'hang') {
      count('hang', record);
      await wait(behaviour.hangMs, c.req.raw.signal);
      // The client gave up (its timeout): nothing more to answer or count.
      if (c.req.raw.signal.aborted) return new Response(null, { status: 499 });
    } else {
      await wait(latency());
    }
    if (fault && mode === 'rate-limit') {
      count('rate_limited', record);
      return openAiError(c, 429, { message: 'Rate limit reached for requests.', type: 'requests', code: 'rate_limit_exceeded' }, retryAfter());
    }
    if (fault && mode === 'error-burst') {
      count('server_error', record);
      return openAiError(
        c,
        behaviour.errorStatus,
        { message: 'The server had an error while processing your request.', type: 'server_error' },
        behaviour.errorStatus === 503 ? retryAfter() : {},
      );
    }
    if (fault && mode === 'bad-request') {
      count('bad_request', record);
      return openAiError(c, 400, {
        message: "This model's maximum context length is 8192 tokens.",
        type: 'invalid_request_error',
        param: 'messages',
        code: 'context_length_exceeded',
      });
    }

    const malformed = fault && mode === 'malformed';
    const verdict = verdictFor(request, behaviour.seed);
    const userText = textOf(request.messages.find((m) => m.role === 'user')?.content);
    const script = behaviour.scripted.find((s) => userText.includes(s.contains));
    if (script?.reasoning !== undefined) verdict.reasoning = script.reasoning;
    let content = malformed
      ? `Sure! Here is my verdict: score ${JSON.stringify(verdict.score ?? verdict.label ?? 3)} — {"reasoning": "unterminated`
      : JSON.stringify(verdict);
    // A judge that repeats the material it was shown (injected verdicts included) before its own.
    if (script?.echoInput && !malformed) content = `You showed me:\n${userText}\n\nMy verdict:\n\`\`\`json\n${content}\n\`\`\``;
    count(malformed ? 'malformed' : 'ok', record);
    const promptChars = request.messages.reduce((sum, m) => sum + textOf(m.content).length, 0);
    const promptTokens = script?.tokens ?? tokens(promptChars);
    const completionTokens = script?.tokens ?? tokens(content.length);
    onAnswered?.({ contentHash, total: stats.total });
    return c.json({
      id: `chatcmpl-fake-${stats.total}`,
      object: 'chat.completion',
      created: Math.floor(Date.now() / 1000),
      model: request.model ?? behaviour.model,
      choices: [{ index: 0, message: { role: 'assistant', content, refusal: null }, logprobs: null, finish_reason: 'stop' }],
      usage: { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens },
    });
  }

  app.get('/_control', (c) => c.json(behaviour));
  app.post('/_control', async (c) => {
    let patch: Partial<FakeJudgeBehaviour> & { latencyMs?: number | string | [number, number] };
    try {
      patch = await c.req.json<typeof patch>();
      if (typeof patch.latencyMs === 'string') patch.latencyMs = parseLatency(patch.latencyMs);
      return c.json(control(patch as Partial<FakeJudgeBehaviour>));
    } catch (error) {
      return c.json({ error: (error as Error).message }, 400);
    }
  });
  app.get('/_stats', (c) => c.json(stats));
  app.get('/_requests', (c) => c.json(requestLog));
  app.post('/_stats/reset', (c) => {
    resetStats();
    return c.json(stats);
  });

  const { server, port } = await new Promise<{ server: ServerType; port: number }>((resolve, reject) => {
    const s = serve({ fetch: app.fetch, port: wantedPort, hostname: host }, (info: AddressInfo) => resolve({ server: s, port: info.port }));
    s.once('error', reject);
  });

  return {
    url: `http://${host}:${port}`,
    port,
    control,
    behaviour: () => ({ ...behaviour }),
    stats: () => structuredClone(stats),
    requestLog: () => requestLog.map((r) => ({ ...r })),
    resetStats,
    async close() {
      if (revertTimer) clearTimeout(revertTimer);
      closing.abort();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        const http = server as { closeAllConnections?: () => void };
        http.closeAllConnections?.();
      });
    },
  };
}
