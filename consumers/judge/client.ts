// The judge client: one verdict from an OpenAI-compatible POST /v1/chat/completions over undici.
// Temperature 0; response_format json_schema (strict), falling back to plain-JSON instructions
// when the server rejects it (remembered per endpoint); one re-ask on an unparseable answer and
// never a fabricated score: unparseable twice is an ERROR outcome (JUDGE_UNPARSEABLE). Failures
// are classified by HTTP status, the provider's structured error fields and undici/socket error
// codes, never by message text: 429 (with Retry-After), 408, 5xx, timeouts and connection errors
// are retryable; other 4xx are permanent.
import { EvalboxError, PermanentError, RetryableError, specOf } from '../../src/errors.js';
import { storableText } from '../score-rows.js';
import type { Clock } from './clock.js';
import { costOf, type ModelPrice } from './config.js';
import type { CallReport, JudgeEndpoint } from './endpoint.js';
import type { JudgeEventEmitter, RequestOutcome, RetryClass } from './events.js';
import type { ChatMessage, CompiledRubric, NormalisedInputs, ResponseFormatMode } from './rubrics.js';

/**
 * A judge's answer for one dimension: a verdict (COMPLETED), an ERROR that retrying cannot fix
 * (unparseable twice, a refusal), or SKIPPED (a required input is missing, nothing was called).
 */
export interface JudgeOutcome {
  dimension: string;
  status: 'COMPLETED' | 'ERROR' | 'SKIPPED';
  /** 0..1, null for an ERROR. */
  value: number | null;
  label: string | null;
  rawValue: number | null;
  reasoning: string | null;
  direction: 'higher_is_better' | 'lower_is_better';
  /** JUDGE_UNPARSEABLE or JUDGE_REFUSED for an ERROR, MISSING_INPUT for SKIPPED. */
  errorCode: string | null;
  scorerName: string;
  scorerVersion: string;
  endpoint: string;
  judgeModel: string;
  promptHash: string;
  inputTokens: number;
  outputTokens: number;
  /** Wall time of the call(s) that produced the outcome (of the lookup for a cache hit). */
  latencyMs: number;
  /** USD; null when the model has no price (0 for a cache hit). */
  costUsd: number | null;
  cacheHit: boolean;
  /** HTTP requests this outcome took (0 for a cache hit). */
  requests: number;
  responseFormat: ResponseFormatMode;
}

export interface RequestContext {
  prices: Record<string, ModelPrice>;
  clock: Clock;
  events?: JudgeEventEmitter;
  signal?: AbortSignal;
}

/** How a call that ended with `error`'s code counts (src/errors.ts, ERROR_CODES[code].judgeCall). */
function judgeCallOf(error: unknown) {
  return error instanceof EvalboxError ? specOf(error.code)?.judgeCall : undefined;
}

/** How a call that ended in `error` reports to the breaker and the limiter, and its retry class. */
export function reportFor(error: unknown): CallReport & { retryClass?: RetryClass } {
  const call = judgeCallOf(error);
  if (!call) return { health: 'ignore', permit: 'ignore' };
  const retryAfterMs = error instanceof RetryableError ? error.retryAfterMs : undefined;
  const retryClass = specOf((error as EvalboxError).code)?.retryClass;
  return {
    health: call.health,
    permit: call.permit,
    ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
    ...(retryClass ? { retryClass } : {}),
  };
}

/** Retry-After as milliseconds: OpenAI's retry-after-ms, else delay-seconds or an HTTP date. */
export function parseRetryAfter(headers: Record<string, string | string[] | undefined>, now: number): number | undefined {
  const first = (name: string) => {
    const value = headers[name];
    return Array.isArray(value) ? value[0] : value;
  };
  const ms = first('retry-after-ms');
  if (ms !== undefined && ms.trim() !== '' && Number.isFinite(Number(ms)) && Number(ms) >= 0) return Math.ceil(Number(ms));
  const raw = first('retry-after')?.trim();
  if (!raw) return undefined;
  if (/^\d+(\.\d+)?$/.test(raw)) return Math.ceil(Number(raw) * 1000);
  const at = Date.parse(raw);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

interface ProviderError {
  message?: string;
  type?: string;
  param?: string | null;
  code?: string | number | null;
}

function providerErrorOf(body: string): ProviderError | undefined {
  try {
    const parsed = JSON.parse(body) as { error?: unknown };
    if (parsed && typeof parsed.error === 'object' && parsed.error !== null) return parsed.error;
  } catch {
    // not JSON: no structured fields to go by
  }
  return undefined;
}

function describe(status: number, error: ProviderError | undefined): string {
  const parts = [`HTTP ${status}`];
  if (error?.type) parts.push(String(error.type));
  if (error?.code) parts.push(String(error.code));
  if (error?.message) parts.push(String(error.message).slice(0, 200));
  return parts.join(' ');
}

/** The error for a non-2xx answer (a response_format rejection is handled before this). */
export function errorForStatus(endpoint: string, status: number, error: ProviderError | undefined, retryAfterMs: number | undefined): EvalboxError {
  const message = `judge endpoint ${endpoint}: ${describe(status, error)}`;
  const hint = retryAfterMs === undefined ? {} : { retryAfterMs };
  if (status === 429) return new RetryableError(message, { code: 'JUDGE_RATE_LIMITED', ...hint });
  if (status === 408) return new RetryableError(message, { code: 'JUDGE_TIMEOUT', ...hint });
  if (status >= 500) return new RetryableError(message, { code: 'JUDGE_SERVER_ERROR', ...hint });
  if (status === 401 || status === 403) return new PermanentError(message, { code: 'JUDGE_AUTH' });
  if (error?.code === 'context_length_exceeded' || status === 413) return new PermanentError(message, { code: 'JUDGE_CONTEXT_TOO_LONG' });
  if (status >= 400) return new PermanentError(message, { code: 'JUDGE_CLIENT_ERROR' });
  return new RetryableError(message, { code: 'JUDGE_BAD_RESPONSE' });
}

const TIMEOUT_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'UND_ERR_CONNECT_TIMEOUT', 'ETIMEDOUT']);
const CONNECTION_CODES = new Set([
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ECONNABORTED',
]);

/** Classifies a thrown transport error by its code (and the DOMException name of an abort). */
export function classifyTransportError(endpoint: string, thrown: unknown, callerSignal: AbortSignal | undefined): RetryableError {
  if (callerSignal?.aborted) return new RetryableError(`judge request to ${endpoint} aborted`, { code: 'JUDGE_ABORTED', cause: thrown });
  const error = thrown as { code?: unknown; name?: unknown; message?: unknown };
  const code = typeof error?.code === 'string' ? error.code : undefined;
  const name = typeof error?.name === 'string' ? error.name : undefined;
  const text = typeof error?.message === 'string' ? error.message : String(thrown);
  if ((code && TIMEOUT_CODES.has(code)) || name === 'TimeoutError')
    return new RetryableError(`judge request to ${endpoint} timed out: ${text}`, { code: 'JUDGE_TIMEOUT', cause: thrown });
  if (code && CONNECTION_CODES.has(code))
    return new RetryableError(`judge endpoint ${endpoint} unreachable: ${text}`, { code: 'JUDGE_CONNECTION', cause: thrown });
  // An unknown transport failure: the request did not complete, and trying again is safe.
  return new RetryableError(`judge request to ${endpoint} failed: ${text}`, { code: 'JUDGE_CONNECTION', cause: thrown });
}

interface Completion {
  content: string | null;
  refusal: string | null;
  inputTokens: number;
  outputTokens: number;
}

function readCompletion(body: string): Completion | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    return undefined;
  }
  const choice = (parsed as { choices?: unknown[] })?.choices?.[0] as { message?: { content?: unknown; refusal?: unknown } } | undefined;
  if (!choice?.message || typeof choice.message !== 'object') return undefined;
  const usage = (parsed as { usage?: { prompt_tokens?: unknown; completion_tokens?: unknown } }).usage;
  const tokens = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? Math.round(v) : 0);
  return {
    content: typeof choice.message.content === 'string' ? choice.message.content : null,
    refusal: typeof choice.message.refusal === 'string' && choice.message.refusal.length > 0 ? choice.message.refusal : null,
    inputTokens: tokens(usage?.prompt_tokens),
    outputTokens: tokens(usage?.completion_tokens),
  };
}

function requestBody(endpoint: JudgeEndpoint, rubric: CompiledRubric, messages: ChatMessage[], mode: ResponseFormatMode): string {
  return JSON.stringify({
    model: endpoint.model,
    temperature: 0,
    messages,
    ...(endpoint.config.maxOutputTokens ? { max_tokens: endpoint.config.maxOutputTokens } : {}),
    ...(mode === 'json_schema'
      ? { response_format: { type: 'json_schema', json_schema: { name: `${rubric.id}_verdict`, schema: rubric.schema, strict: true } } }
      : {}),
  });
}

interface HttpAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/**
 * The call's deadline as an abort signal. Its timer runs on the same event loop that reads the
 * answer, and when the loop was blocked past the deadline (a synchronous native call, a long
 * garbage collection, a starved CPU) it fires in the loop's timers phase, before the loop reads
 * the sockets that became readable meanwhile: aborting there would throw away an answer that
 * arrived in time and is paid for (and give the cache claim back, so the next delivery pays
 * again). So the abort waits one turn of the loop — setImmediate runs after the loop has polled
 * its sockets — and an answer that is already there is read first.
 */
function deadline(ms: number): { signal: AbortSignal; clear(): void } {
  const controller = new AbortController();
  let immediate: NodeJS.Immediate | undefined;
  const timer = setTimeout(() => {
    immediate = setImmediate(() => controller.abort(new DOMException(`no answer within ${ms} ms`, 'TimeoutError')));
  }, ms);
  return {
    signal: controller.signal,
    clear() {
      clearTimeout(timer);
      if (immediate) clearImmediate(immediate);
    },
  };
}

async function post(endpoint: JudgeEndpoint, body: string, signal: AbortSignal | undefined): Promise<HttpAnswer> {
  // The only bound on the call, from dispatch to the body's last byte (the pool's own header and
  // body timeouts are off: their timers would race a blocked loop the same way).
  const timeout = deadline(endpoint.config.timeoutMs);
  const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'application/json', ...endpoint.config.headers };
  if (endpoint.config.apiKey) headers.authorization = `Bearer ${endpoint.config.apiKey}`;
  try {
    const response = await endpoint.dispatcher.request({
      origin: endpoint.origin,
      path: endpoint.path,
      method: 'POST',
      headers,
      body,
      signal: signal ? AbortSignal.any([signal, timeout.signal]) : timeout.signal,
    });
    return { status: response.statusCode, headers: response.headers, body: await response.body.text() };
  } catch (error) {
    throw classifyTransportError(endpoint.name, error, signal);
  } finally {
    timeout.clear();
  }
}

/** Tokens and cost of answers already received (and paid for) when a later request of the same verdict failed. */
export interface PaidUsage {
  inputTokens: number;
  outputTokens: number;
  costUsd: number | null;
}

/** `error` carrying the usage paid before it happened (nothing is attached when nothing was paid). */
function withPaidUsage(error: unknown, usage: PaidUsage): unknown {
  if (usage.inputTokens + usage.outputTokens > 0 && error instanceof EvalboxError) Object.assign(error, { paidUsage: usage });
  return error;
}

/** The usage a failed judge call had already paid for, if any. */
export function paidUsageOf(error: unknown): PaidUsage | undefined {
  return (error as { paidUsage?: PaidUsage } | undefined)?.paidUsage;
}

/**
 * Asks `endpoint` for a verdict on `inputs`. Returns COMPLETED, or ERROR (unparseable twice, or a
 * refusal); throws RetryableError / PermanentError for transport and HTTP failures. Does not
 * admit the call: the caller holds the endpoint's admission around it.
 */
export async function requestVerdict(endpoint: JudgeEndpoint, rubric: CompiledRubric, inputs: NormalisedInputs, ctx: RequestContext): Promise<JudgeOutcome> {
  const started = performance.now();
  let mode = endpoint.responseFormat;
  let messages = rubric.messages(inputs, mode);
  let inputTokens = 0;
  let outputTokens = 0;
  let cost: number | null = 0;
  let requests = 0;
  let contentAttempts = 0;
  // A 400 without a structured `param` might still be the response_format: one plain try decides.
  let probingPlain = false;

  const outcome = (fields: Pick<JudgeOutcome, 'status' | 'value' | 'label' | 'rawValue' | 'reasoning' | 'errorCode'>): JudgeOutcome => ({
    dimension: rubric.id,
    ...fields,
    // A NUL in the judge's text is not a reason to lose (or pay again for) its verdict.
    reasoning: storableText(fields.reasoning),
    label: storableText(fields.label),
    direction: rubric.direction,
    scorerName: rubric.scorerName,
    scorerVersion: rubric.version,
    endpoint: endpoint.name,
    judgeModel: endpoint.model,
    promptHash: rubric.promptHash,
    inputTokens,
    outputTokens,
    latencyMs: performance.now() - started,
    costUsd: cost,
    cacheHit: false,
    requests,
    responseFormat: mode,
  });

  const paid = (): PaidUsage => ({ inputTokens, outputTokens, costUsd: cost });

  for (;;) {
    const requestStarted = performance.now();
    const emit = (result: RequestOutcome, status: number | null, tokensIn = 0, tokensOut = 0) =>
      ctx.events?.emit('judge:request', {
        endpoint: endpoint.name,
        model: endpoint.model,
        dimension: rubric.id,
        outcome: result,
        status,
        durationMs: performance.now() - requestStarted,
        inputTokens: tokensIn,
        outputTokens: tokensOut,
        costUsd: costOf(ctx.prices, endpoint.model, tokensIn, tokensOut),
      });
    requests++;
    let answer: HttpAnswer;
    try {
      answer = await post(endpoint, requestBody(endpoint, rubric, messages, mode), ctx.signal);
    } catch (error) {
      emit(judgeCallOf(error)?.outcome ?? 'connection_error', null);
      throw withPaidUsage(error, paid());
    }

    if (answer.status < 200 || answer.status >= 300) {
      const providerError = providerErrorOf(answer.body);
      const formatRelated = mode === 'json_schema' && (answer.status === 400 || answer.status === 422);
      if (
        formatRelated &&
        (providerError?.param === 'response_format' ||
          (!providerError?.param && providerError?.code !== 'context_length_exceeded' && !probingPlain && contentAttempts === 0))
      ) {
        emit('response_format_rejected', answer.status);
        ctx.events?.emit('judge:retry', { endpoint: endpoint.name, dimension: rubric.id, class: 'response_format_fallback' });
        if (providerError?.param === 'response_format') endpoint.responseFormat = 'plain';
        else probingPlain = true;
        mode = 'plain';
        messages = rubric.messages(inputs, mode);
        continue;
      }
      const error = errorForStatus(endpoint.name, answer.status, providerError, parseRetryAfter(answer.headers, ctx.clock.wallNow()));
      emit(judgeCallOf(error)?.outcome ?? 'client_error', answer.status);
      throw withPaidUsage(error, paid());
    }

    const completion = readCompletion(answer.body);
    if (!completion) {
      emit('bad_response', answer.status);
      throw withPaidUsage(
        new RetryableError(`judge endpoint ${endpoint.name}: HTTP ${answer.status} without a chat completion in the body`, { code: 'JUDGE_BAD_RESPONSE' }),
        paid(),
      );
    }
    inputTokens += completion.inputTokens;
    outputTokens += completion.outputTokens;
    const callCost = costOf(ctx.prices, endpoint.model, completion.inputTokens, completion.outputTokens);
    cost = cost === null || callCost === null ? null : cost + callCost;
    // The plain try after an unexplained 400 worked: this endpoint wants plain JSON.
    if (probingPlain) endpoint.responseFormat = 'plain';
    contentAttempts++;

    if (completion.refusal !== null) {
      emit('refused', answer.status, completion.inputTokens, completion.outputTokens);
      return outcome({ status: 'ERROR', value: null, label: null, rawValue: null, reasoning: completion.refusal.slice(0, 2000), errorCode: 'JUDGE_REFUSED' });
    }
    const parsed = rubric.parseVerdict(completion.content ?? '');
    if ('verdict' in parsed) {
      emit('ok', answer.status, completion.inputTokens, completion.outputTokens);
      const v = parsed.verdict;
      return outcome({ status: 'COMPLETED', value: v.value, label: v.label, rawValue: v.rawValue, reasoning: v.reasoning, errorCode: null });
    }
    emit('unparseable', answer.status, completion.inputTokens, completion.outputTokens);
    if (contentAttempts >= 2) {
      return outcome({ status: 'ERROR', value: null, label: null, rawValue: null, reasoning: null, errorCode: 'JUDGE_UNPARSEABLE' });
    }
    ctx.events?.emit('judge:retry', { endpoint: endpoint.name, dimension: rubric.id, class: 'reask' });
    messages = [...messages, { role: 'assistant', content: completion.content ?? '' }, rubric.reaskMessage(parsed.problem)];
  }
}
