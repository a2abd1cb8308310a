// The judge as the scoring consumer sees it: built once per process from the judge config, it
// scores a dimension (through the cache when given a database), lists its dimensions for the
// registry, hands out one scorer per dimension, and reports endpoint pressure (throttled, circuit
// open) so the consumer can pause consumption instead of failing evaluations.
import { randomBytes } from 'node:crypto';
import type { Db } from '../../src/db/index.js';
import { EvalboxError, PermanentError, specOf } from '../../src/errors.js';
import type { Logger } from '../../src/logging.js';
import { inSpan, SpanKind } from '../../src/tracing.js';
import { judgeWithCache, type JudgeCacheContext, type JudgeRequest, type JudgeRunner, type PreparedCall } from './cache.js';
import { reportFor, requestVerdict, type JudgeOutcome } from './client.js';
import { systemClock, type Clock } from './clock.js';
import { judgeDimensionDefinitions, type JudgeConfig } from './config.js';
import { JudgeEndpoint, type EndpointState } from './endpoint.js';
import { DEFAULT_QUEUE_WAIT_MS } from './limiter.js';
import { createJudgeEvents, type JudgeEventEmitter } from './events.js';
import { compileRubric, inputsHash, normaliseInputs, type CompiledRubric, type JudgeDimensionDefinition, type JudgeInputs } from './rubrics.js';

export interface JudgeContext {
  config: JudgeConfig;
  /** With a database, every score goes through the judge cache (never pay twice). */
  db?: Db;
  logger?: Logger;
  clock?: Clock;
  events?: JudgeEventEmitter;
  /** Names this replica in cache claims. */
  instanceId?: string;
}

/** One dimension's scorer: async, throws RetryableError (429 with retryAfterMs, 5xx, timeouts, open circuit) or PermanentError (4xx). */
export type JudgeScorer = (inputs: JudgeInputs, options?: { signal?: AbortSignal }) => Promise<JudgeOutcome>;

export interface JudgePressure {
  /** True when any endpoint the given dimensions use is throttled or open. */
  pause: boolean;
  /** How long until all of them could take calls again. */
  retryAfterMs: number;
  endpoints: EndpointState[];
}

export interface Judge {
  /** For the dimensions registry (scorerKind LLM_JUDGE). */
  dimensions: JudgeDimensionDefinition[];
  events: JudgeEventEmitter;
  /** `applicationId`: the tenant asking; a verdict another tenant paid for is not shown to it as a cache hit. */
  score(dimension: string, inputs: JudgeInputs, options?: { signal?: AbortSignal; applicationId?: string }): Promise<JudgeOutcome>;
  /** One scorer per judge dimension, for the consumer's Map<dimension, Scorer>. */
  scorers(): Map<string, JudgeScorer>;
  endpointOf(dimension: string): string;
  endpointState(name?: string): EndpointState;
  endpointStates(): EndpointState[];
  /** Whether the consumer should pause for the endpoints behind `dimensions` (all when omitted). */
  pressure(dimensions?: string[]): JudgePressure;
  /** Waits for cache writes under way, then ends the HTTP pools. Close it before the database pool. */
  close(): Promise<void>;
}

// Which errors are provider pressure (guarantee 6) is said once, in src/errors.ts (ERROR_CODES).
export { isProviderPressure } from '../../src/errors.js';

export function createJudge(ctx: JudgeContext): Judge {
  const { config } = ctx;
  // The cache's relaxed commits are transaction-local: inside a caller's transaction they would
  // relax that transaction's commit too. (A judge call inside a transaction would also hold it open.)
  if (ctx.db?.isTransaction) throw new PermanentError('createJudge needs the pool-level database handle, not a transaction', { code: 'CONFIG_INVALID' });
  const clock = ctx.clock ?? systemClock;
  const events = ctx.events ?? createJudgeEvents();
  const endpoints = new Map(config.endpoints.map((e) => [e.name, new JudgeEndpoint(e, clock, events)]));
  const dimensions = judgeDimensionDefinitions(config);
  const rubrics = new Map<string, CompiledRubric>(config.rubrics.filter((r) => dimensions.some((d) => d.id === r.id)).map((r) => [r.id, compileRubric(r)]));
  const inflight: JudgeCacheContext['inflight'] = new Map();
  const pendingWrites = new Set<Promise<void>>();
  const closing = new AbortController();
  const instanceId = ctx.instanceId ?? `judge-${randomBytes(4).toString('hex')}`;

  if (ctx.logger) {
    const log = ctx.logger;
    events.on('judge:circuitOpened', (e) => log.warn(e, 'judge circuit opened'));
    events.on('judge:circuitClosed', (e) => log.info(e, 'judge circuit closed'));
    events.on('judge:throttled', (e) => log.warn(e, 'judge endpoint rate limited'));
    events.on('judge:cacheError', ({ dimension, error }) => log.error({ dimension, err: error }, 'judge cache write failed'));
  }

  const endpointFor = (dimension: string): JudgeEndpoint => endpoints.get(config.dimensions[dimension]?.endpoint ?? config.defaultEndpoint) as JudgeEndpoint;

  const runner: JudgeRunner = {
    prepare(request: JudgeRequest): PreparedCall | { outcome: JudgeOutcome } {
      const rubric = rubrics.get(request.dimension);
      if (!rubric) throw new PermanentError(`"${request.dimension}" is not an enabled judge dimension`, { code: 'JUDGE_UNKNOWN_DIMENSION' });
      const endpoint = endpointFor(request.dimension);
      const normalised = normaliseInputs(rubric, request.inputs);
      if ('missing' in normalised) {
        return {
          outcome: {
            dimension: rubric.id,
            status: 'SKIPPED',
            value: null,
            label: null,
            rawValue: null,
            reasoning: `missing input: ${normalised.missing.join(', ')}`,
            direction: rubric.direction,
            errorCode: 'MISSING_INPUT',
            scorerName: rubric.scorerName,
            scorerVersion: rubric.version,
            endpoint: endpoint.name,
            judgeModel: endpoint.model,
            promptHash: rubric.promptHash,
            inputTokens: 0,
            outputTokens: 0,
            latencyMs: 0,
            costUsd: 0,
            cacheHit: false,
            requests: 0,
            responseFormat: endpoint.responseFormat,
          },
        };
      }
      const inputs = normalised.inputs;
      return {
        key: {
          dimension: rubric.id,
          scorerVersion: rubric.version,
          judgeModel: endpoint.model,
          judgeEndpoint: `${endpoint.origin}${endpoint.path}`,
          promptHash: rubric.promptHash,
          inputsHash: inputsHash(rubric, inputs),
        },
        endpoint: endpoint.name,
        // The claim is taken before admission: it must outlive the wait for a slot plus at most
        // three requests (format fallback, answer, re-ask), each bounded by the timeout.
        claimTtlMs: config.cache.claimTtlMs ?? (endpoint.config.limiter.maxQueueWaitMs ?? DEFAULT_QUEUE_WAIT_MS) + endpoint.config.timeoutMs * 3 + 5000,
        async admit(signal) {
          try {
            return await endpoint.admit(signal);
          } catch (error) {
            const cls = error instanceof EvalboxError ? specOf(error.code)?.retryClass : undefined;
            if (cls) events.emit('judge:retry', { endpoint: endpoint.name, dimension: rubric.id, class: cls });
            throw error;
          }
        },
        async execute(admission, signal) {
          try {
            const outcome = await requestVerdict(endpoint, rubric, inputs, { prices: config.prices, clock, events, ...(signal ? { signal } : {}) });
            admission.release({ health: 'success', permit: 'success' });
            return outcome;
          } catch (error) {
            const report = reportFor(error);
            admission.release(report);
            if (report.retryClass) events.emit('judge:retry', { endpoint: endpoint.name, dimension: rubric.id, class: report.retryClass });
            throw error;
          }
        },
      };
    },
  };

  const cacheContext: JudgeCacheContext | undefined = ctx.db
    ? { db: ctx.db, runner, claimantId: instanceId, events, inflight, pendingWrites, closing: closing.signal, options: config.cache }
    : undefined;

  /** One judge call (or cache hit) as a span: model, tokens and whether the cache answered. */
  function score(dimension: string, inputs: JudgeInputs, options: { signal?: AbortSignal; applicationId?: string } = {}): Promise<JudgeOutcome> {
    return inSpan('judge call', { kind: SpanKind.CLIENT }, async (span) => {
      const outcome = await scoreUntraced(dimension, inputs, options);
      if (span.isRecording())
        span.setAttributes({
          'gen_ai.operation.name': 'chat',
          'gen_ai.request.model': outcome.judgeModel,
          'gen_ai.usage.input_tokens': outcome.inputTokens,
          'gen_ai.usage.output_tokens': outcome.outputTokens,
          'evalbox.dimension': outcome.dimension,
          'evalbox.judge.endpoint': outcome.endpoint,
          'evalbox.judge.cache_hit': outcome.cacheHit,
          'evalbox.judge.status': outcome.status,
        });
      return outcome;
    });
  }

  async function scoreUntraced(dimension: string, inputs: JudgeInputs, options: { signal?: AbortSignal; applicationId?: string }): Promise<JudgeOutcome> {
    const request: JudgeRequest = {
      dimension,
      inputs,
      ...(options.signal ? { signal: options.signal } : {}),
      ...(options.applicationId === undefined ? {} : { applicationId: options.applicationId }),
    };
    if (cacheContext) return judgeWithCache(cacheContext, request);
    const prepared = runner.prepare(request);
    if ('outcome' in prepared) return prepared.outcome;
    const admission = await prepared.admit(options.signal);
    return prepared.execute(admission, options.signal);
  }

  const stateOf = (name: string): EndpointState => {
    const endpoint = endpoints.get(name);
    if (!endpoint) throw new PermanentError(`no judge endpoint "${name}"`, { code: 'JUDGE_UNKNOWN_ENDPOINT' });
    return endpoint.state();
  };

  return {
    dimensions,
    events,
    score,
    scorers() {
      return new Map(dimensions.map((d) => [d.id, (inputs: JudgeInputs, options?: { signal?: AbortSignal }) => score(d.id, inputs, options)] as const));
    },
    endpointOf: (dimension) => endpointFor(dimension).name,
    endpointState: (name = config.defaultEndpoint) => stateOf(name),
    endpointStates: () => [...endpoints.values()].map((e) => e.state()),
    pressure(dims) {
      const names = new Set(dims ? dims.filter((d) => rubrics.has(d)).map((d) => endpointFor(d).name) : endpoints.keys());
      const states = [...names].map(stateOf);
      const retryAfterMs = Math.max(0, ...states.map((s) => s.retryAfterMs));
      return { pause: retryAfterMs > 0, retryAfterMs, endpoints: states };
    },
    async close() {
      // Verdict writes first: they need the database pool, which the caller closes after us. One
      // that is retrying (the database is down) makes its current attempt and gives up.
      closing.abort();
      await Promise.all([...pendingWrites]);
      await Promise.all([...endpoints.values()].map((e) => e.close()));
    },
  };
}
