// The fake OpenAI-compatible judge itself, over real HTTP: deterministic verdicts in the shape
// asked for, latency, every scripted fault, run-time control (including timed and counted
// faults), the call counters, and the `evalbox fake-judge` process.
import { spawn, spawnSync } from 'node:child_process';
import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import { startFakeJudge, type FakeJudge } from '../src/fake-judge/server.js';
import { waitFor } from './helpers.js';

const likertSchema = {
  type: 'object',
  properties: { reasoning: { type: 'string' }, score: { type: 'integer', enum: [1, 2, 3, 4, 5] } },
  required: ['reasoning', 'score'],
  additionalProperties: false,
};
const labelSchema = {
  type: 'object',
  properties: { reasoning: { type: 'string' }, label: { type: 'string', enum: ['none', 'mild', 'severe'] } },
  required: ['reasoning', 'label'],
  additionalProperties: false,
};

function chat(user: string, schema?: object, system = 'You are a judge.') {
  return {
    model: 'fake-judge-1',
    temperature: 0,
    messages: [
      { role: 'system', content: system },
      { role: 'user', content: user },
    ],
    ...(schema ? { response_format: { type: 'json_schema', json_schema: { name: 'verdict', schema, strict: true } } } : {}),
  };
}

interface Completion {
  object: string;
  model: string;
  choices: { message: { role: string; content: string }; finish_reason: string }[];
  usage: { prompt_tokens: number; completion_tokens: number; total_tokens: number };
}

describe('fake judge', () => {
  let fake: FakeJudge;
  const post = async (body: unknown, path = '/v1/chat/completions', signal?: AbortSignal) => {
    const response = await fetch(`${fake.url}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
      ...(signal ? { signal } : {}),
    });
    return { status: response.status, headers: response.headers, json: (await response.json()) as Record<string, unknown> };
  };
  const content = (json: Record<string, unknown>) =>
    JSON.parse((json as unknown as Completion).choices[0]?.message.content as string) as Record<string, unknown>;

  beforeAll(async () => {
    fake = await startFakeJudge();
  });
  afterEach(() => {
    fake.control({ mode: 'ok', latencyMs: 0, fraction: 1, seed: 1, retryAfterSeconds: 1, retryAfterFormat: 'seconds' });
    fake.resetStats();
  });
  afterAll(async () => fake.close());

  it('answers an OpenAI-shaped chat completion with a deterministic verdict in the requested json_schema, and usage ≈ chars/4', async () => {
    const a = await post(chat('<RESPONSE>hello</RESPONSE>', likertSchema));
    const b = await post(chat('<RESPONSE>hello</RESPONSE>', likertSchema));
    expect(a.status).toBe(200);
    const completion = a.json as unknown as Completion;
    expect(completion).toMatchObject({
      object: 'chat.completion',
      model: 'fake-judge-1',
      choices: [{ message: { role: 'assistant' }, finish_reason: 'stop' }],
    });
    const verdict = content(a.json);
    expect(Object.keys(verdict)).toEqual(['reasoning', 'score']);
    expect([1, 2, 3, 4, 5]).toContain(verdict.score);
    expect(content(b.json)).toEqual(verdict);
    const chars = 'You are a judge.'.length + '<RESPONSE>hello</RESPONSE>'.length;
    expect(completion.usage.prompt_tokens).toBe(Math.ceil(chars / 4));
    expect(completion.usage.completion_tokens).toBe(Math.ceil(completion.choices[0]!.message.content.length / 4));
    expect(completion.usage.total_tokens).toBe(completion.usage.prompt_tokens + completion.usage.completion_tokens);

    // Different content spreads over the scale.
    const scores = new Set<unknown>();
    for (let i = 0; i < 30; i++) scores.add(content((await post(chat(`content ${i}`, likertSchema))).json).score);
    expect(scores.size).toBeGreaterThanOrEqual(4);
  });

  it('fills a label enum, and reads the schema from a ```json block of the prompt when no response_format is sent', async () => {
    expect(['none', 'mild', 'severe']).toContain(content((await post(chat('x', labelSchema))).json).label);
    const plain = await post(chat('judge this', undefined, `Be fair.\nReply with JSON valid against:\n\`\`\`json\n${JSON.stringify(labelSchema)}\n\`\`\``));
    expect(['none', 'mild', 'severe']).toContain(content(plain.json).label);
    const bare = content((await post(chat('no schema at all'))).json);
    expect([1, 2, 3, 4, 5]).toContain(bare.score);
    expect(typeof bare.reasoning).toBe('string');
  });

  it('waits the fixed latency, or a seeded draw from a range', async () => {
    fake.control({ latencyMs: 120 });
    let started = performance.now();
    await post(chat('slow', likertSchema));
    expect(performance.now() - started).toBeGreaterThanOrEqual(115);
    fake.control({ latencyMs: [30, 60] });
    for (let i = 0; i < 3; i++) {
      started = performance.now();
      await post(chat(`range ${i}`, likertSchema));
      const took = performance.now() - started;
      expect(took).toBeGreaterThanOrEqual(28);
      expect(took).toBeLessThan(400);
    }
  });

  it('rate-limit: 429 with Retry-After (seconds or HTTP date) and an OpenAI error body', async () => {
    fake.control({ mode: 'rate-limit', retryAfterSeconds: 3 });
    const limited = await post(chat('x', likertSchema));
    expect(limited.status).toBe(429);
    expect(limited.headers.get('retry-after')).toBe('3');
    expect(limited.json).toEqual({ error: { message: expect.any(String), type: 'requests', param: null, code: 'rate_limit_exceeded' } });
    fake.control({ retryAfterFormat: 'date' });
    const dated = await post(chat('x', likertSchema));
    expect(Date.parse(dated.headers.get('retry-after') as string)).toBeGreaterThan(Date.now());
  });

  it('no-response-format: 400 invalid_request_error with param response_format; plain requests still work', async () => {
    fake.control({ mode: 'no-response-format' });
    const rejected = await post(chat('x', likertSchema));
    expect(rejected.status).toBe(400);
    expect(rejected.json).toMatchObject({ error: { type: 'invalid_request_error', param: 'response_format', code: 'unsupported_parameter' } });
    expect((await post(chat('x'))).status).toBe(200);
  });

  it('error-burst for a duration, then back to ok by itself; a counted fault ends after N requests', async () => {
    fake.control({ mode: 'error-burst', durationMs: 300 });
    expect((await post(chat('x', likertSchema))).status).toBe(500);
    await waitFor(async () => (await post(chat('x', likertSchema))).status === 200, { what: 'the burst to end', timeoutMs: 3000 });
    expect(fake.behaviour().mode).toBe('ok');

    fake.control({ mode: 'error-burst', requests: 2 });
    const statuses = [];
    for (let i = 0; i < 4; i++) statuses.push((await post(chat('x', likertSchema))).status);
    expect(statuses).toEqual([500, 500, 200, 200]);
  });

  it('applies a fault to a seeded fraction of requests', async () => {
    fake.control({ mode: 'error-burst', fraction: 0.3, seed: 42 });
    let failed = 0;
    for (let i = 0; i < 100; i++) if ((await post(chat(`f ${i}`, likertSchema))).status === 500) failed++;
    expect(failed).toBeGreaterThan(15);
    expect(failed).toBeLessThan(45);
  });

  it('malformed: 200 whose content is not JSON; bad-request: 400 context_length_exceeded', async () => {
    fake.control({ mode: 'malformed' });
    const malformed = await post(chat('x', likertSchema));
    expect(malformed.status).toBe(200);
    expect(() => JSON.parse((malformed.json as unknown as Completion).choices[0]!.message.content) as unknown).toThrow();
    fake.control({ mode: 'bad-request' });
    expect(await post(chat('x', likertSchema))).toMatchObject({ status: 400, json: { error: { code: 'context_length_exceeded', param: 'messages' } } });
  });

  it('hang: holds the request until the client gives up, then forgets it', async () => {
    fake.control({ mode: 'hang' });
    const started = performance.now();
    await expect(post(chat('x', likertSchema), '/v1/chat/completions', AbortSignal.timeout(200))).rejects.toThrow();
    expect(performance.now() - started).toBeLessThan(1000);
    await waitFor(() => fake.stats().inFlight === 0, { what: 'the hung request to end' });
    expect(fake.stats().byOutcome).toEqual({ hang: 1 });
  });

  it('is controlled over HTTP and counts calls by mode, outcome and content', async () => {
    const control = await post({ mode: 'rate-limit', latencyMs: '5-10' }, '/_control');
    expect(control).toMatchObject({ status: 200, json: { mode: 'rate-limit', latencyMs: [5, 10] } });
    expect((await post({ mode: 'bogus' }, '/_control')).status).toBe(400);
    await post(chat('one', likertSchema));
    await post({ mode: 'ok' }, '/_control');
    await post(chat('one', likertSchema));
    await post(chat('two', likertSchema));
    const stats = (await (await fetch(`${fake.url}/_stats`)).json()) as Record<string, unknown>;
    expect(stats).toMatchObject({
      total: 3,
      distinctContent: 2,
      duplicates: 1,
      byMode: { 'rate-limit': 1, ok: 2 },
      byOutcome: { rate_limited: 1, ok: 2 },
      byResponseFormat: { json_schema: 3, plain: 0 },
    });
    expect(Object.values(stats.byContentHash as Record<string, number>).sort()).toEqual([1, 2]);
    await post({}, '/_stats/reset');
    expect(fake.stats().total).toBe(0);
    expect((await post({ messages: 'nope' })).status).toBe(400);
    const models = (await (await fetch(`${fake.url}/v1/models`)).json()) as { data: { id: string }[] };
    expect(models.data[0]?.id).toBe('fake-judge-1');
  });

  it('logs every request: content, rubric, outcome, times, the naming client, and whether the client was gone when it was answered', async () => {
    fake.control({ latencyMs: 300 });
    const named = { 'content-type': 'application/json', 'x-judge-client': 'scorer-7' };
    const answered = await fetch(`${fake.url}/v1/chat/completions`, { method: 'POST', headers: named, body: JSON.stringify(chat('kept', likertSchema)) });
    expect(answered.status).toBe(200);
    await answered.text();
    // A client that goes away while its request is being answered (killed, or its timeout) is still answered, and paid for.
    await expect(
      fetch(`${fake.url}/v1/chat/completions`, {
        method: 'POST',
        headers: named,
        body: JSON.stringify(chat('abandoned', likertSchema)),
        signal: AbortSignal.timeout(100),
      }),
    ).rejects.toThrow();
    await waitFor(() => fake.requestLog().length === 2, { what: 'the abandoned request to be answered' });
    const log = (await (await fetch(`${fake.url}/_requests`)).json()) as ReturnType<FakeJudge['requestLog']>;
    expect(log).toEqual(fake.requestLog());
    const [kept, abandoned] = log;
    expect(kept).toMatchObject({ n: 1, outcome: 'ok', clientGone: false, client: 'scorer-7' });
    expect(abandoned).toMatchObject({ n: 2, outcome: 'ok', clientGone: true, client: 'scorer-7' });
    expect(kept?.contentHash).not.toBe(abandoned?.contentHash);
    expect(kept?.rubricHash).toBe(abandoned?.rubricHash);
    expect((abandoned?.endedAt ?? 0) - (abandoned?.startedAt ?? 0)).toBeGreaterThanOrEqual(250);
    expect(Object.keys(fake.stats().byContentHash)).toEqual(log.map((r) => r.contentHash));
    fake.resetStats();
    expect(fake.requestLog()).toEqual([]);
  });

  it('caps concurrency when asked: requests beyond the limit get 429', async () => {
    fake.control({ concurrencyLimit: 2, latencyMs: 100 });
    const statuses = await Promise.all(Array.from({ length: 5 }, (_, i) => post(chat(`c ${i}`, likertSchema)).then((r) => r.status)));
    expect(statuses.filter((s) => s === 200)).toHaveLength(2);
    expect(statuses.filter((s) => s === 429)).toHaveLength(3);
    fake.control({ concurrencyLimit: 0 });
  });
});

describe('evalbox fake-judge', () => {
  it('runs as a process: prints its URL, serves the scripted mode, exits 0 on SIGTERM', async () => {
    const child = spawn('node', ['bin/evalbox.js', 'fake-judge', '--port', '0', '--mode', 'rate-limit', '--retry-after', '4', '--latency-ms', '1-3'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    const url = await waitFor(() => /listening on (http:\/\/\S+)/.exec(out)?.[1], { what: 'the listening line', timeoutMs: 20_000 });
    const response = await fetch(`${url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(chat('x', likertSchema)),
    });
    expect(response.status).toBe(429);
    expect(response.headers.get('retry-after')).toBe('4');
    const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
  });

  it('--help exits 0; a bad flag value exits 2', () => {
    const help = spawnSync('node', ['bin/evalbox.js', 'fake-judge', '--help'], { encoding: 'utf8' });
    expect(help.status).toBe(0);
    expect(help.stdout).toMatch(/POST \/_control/);
    const bad = spawnSync('node', ['bin/evalbox.js', 'fake-judge', '--mode', 'bogus'], { encoding: 'utf8' });
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/--mode must be one of/);
  });
});
