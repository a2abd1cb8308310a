// The judge's configuration: one endpoint from EVALBOX_JUDGE_BASE_URL / _MODEL / _API_KEY, or a
// JSON file (EVALBOX_JUDGE_CONFIG) with several endpoints, the endpoint per dimension, a price
// table per model and user-defined rubric dimensions. No judge configured means no judge
// dimensions: the pipeline then runs on the offline heuristic scorers alone.
import fs from 'node:fs';
import type { Env } from '../../src/config.js';
import { ConfigError } from '../../src/errors.js';
import { createAjv, toFieldErrors } from '../../src/schemas/validator.js';
import type { BreakerOptions } from './breaker.js';
import type { LimiterOptions } from './limiter.js';
import { BUILTIN_RUBRICS, toDimensionDefinition, type JudgeDimensionDefinition, type ResponseFormatMode, type RubricDefinition } from './rubrics.js';

/** USD per million tokens. */
export interface ModelPrice {
  inputPerMTok: number;
  outputPerMTok: number;
}

export interface JudgeEndpointConfig {
  name: string;
  /** The API root: `{baseUrl}/v1/chat/completions` (a baseUrl already ending in /v1 is accepted). */
  baseUrl: string;
  model: string;
  apiKey?: string;
  /** The configured concurrency: the AIMD limit's ceiling and the connection pool size. */
  maxConcurrency: number;
  /** Bound on one HTTP request (headers and body each, and overall). */
  timeoutMs: number;
  connectTimeoutMs: number;
  headers: Record<string, string>;
  /** The first mode tried; a server that rejects json_schema moves the endpoint to plain. */
  responseFormat: ResponseFormatMode;
  maxOutputTokens?: number;
  limiter: Omit<LimiterOptions, 'maxLimit'>;
  breaker: BreakerOptions;
}

export interface JudgeDimensionConfig {
  endpoint?: string;
  samplingRate?: number;
  enabled?: boolean;
}

export interface JudgeCacheConfig {
  /** A claim older than this is presumed dead and taken over (default: 3 request timeouts + 5 s). */
  claimTtlMs?: number;
  /** How long a caller waits for another replica's claim before a RetryableError (default: the claim TTL). */
  maxWaitMs?: number;
  pollMinMs?: number;
  pollMaxMs?: number;
}

export interface JudgeConfig {
  endpoints: JudgeEndpointConfig[];
  defaultEndpoint: string;
  dimensions: Record<string, JudgeDimensionConfig>;
  prices: Record<string, ModelPrice>;
  /** Built-in rubrics first, then the user's. */
  rubrics: RubricDefinition[];
  cache: JudgeCacheConfig;
}

const positive = { type: 'number', exclusiveMinimum: 0 } as const;
const positiveInt = { type: 'integer', minimum: 1 } as const;

const fileSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    endpoints: {
      type: 'array',
      minItems: 1,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['name', 'baseUrl', 'model'],
        properties: {
          name: { type: 'string', pattern: '^[A-Za-z0-9_.-]+$' },
          baseUrl: { type: 'string', pattern: '^https?://' },
          model: { type: 'string', minLength: 1 },
          apiKey: { type: 'string' },
          apiKeyEnv: { type: 'string' },
          maxConcurrency: positiveInt,
          timeoutMs: positiveInt,
          connectTimeoutMs: positiveInt,
          headers: { type: 'object', additionalProperties: { type: 'string' } },
          responseFormat: { enum: ['json_schema', 'plain'] },
          maxOutputTokens: positiveInt,
          limiter: {
            type: 'object',
            additionalProperties: false,
            properties: {
              initialLimit: positiveInt,
              minLimit: positiveInt,
              increase: positive,
              decreaseFactor: { type: 'number', exclusiveMinimum: 0, exclusiveMaximum: 1 },
              defaultRetryAfterMs: positiveInt,
              maxRetryAfterMs: positiveInt,
              maxQueueWaitMs: positiveInt,
            },
          },
          breaker: {
            type: 'object',
            additionalProperties: false,
            properties: {
              windowSize: positiveInt,
              windowMs: positiveInt,
              minCalls: positiveInt,
              failureRate: { type: 'number', exclusiveMinimum: 0, maximum: 1 },
              coolDownMs: positiveInt,
              maxCoolDownMs: positiveInt,
              probeRetryMs: positiveInt,
            },
          },
        },
      },
    },
    defaultEndpoint: { type: 'string' },
    dimensions: {
      type: 'object',
      additionalProperties: {
        type: 'object',
        additionalProperties: false,
        properties: { endpoint: { type: 'string' }, samplingRate: { type: 'number', minimum: 0, maximum: 1 }, enabled: { type: 'boolean' } },
      },
    },
    prices: {
      type: 'object',
      additionalProperties: {
        type: 'object',
        additionalProperties: false,
        required: ['inputPerMTok', 'outputPerMTok'],
        properties: { inputPerMTok: { type: 'number', minimum: 0 }, outputPerMTok: { type: 'number', minimum: 0 } },
      },
    },
    rubrics: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['id', 'name', 'criteria', 'inputs'],
        properties: {
          id: { type: 'string', pattern: '^[a-z][a-z0-9_]{0,62}$' },
          name: { type: 'string', minLength: 1 },
          description: { type: 'string' },
          direction: { enum: ['higher_is_better', 'lower_is_better'] },
          inputs: { type: 'array', minItems: 1, uniqueItems: true, items: { enum: ['prompt', 'response', 'context', 'reference'] } },
          criteria: { type: 'string', minLength: 1 },
          scale: { type: 'object', additionalProperties: false, required: ['min', 'max'], properties: { min: { type: 'integer' }, max: { type: 'integer' } } },
          labels: {
            type: 'array',
            minItems: 2,
            items: {
              type: 'object',
              additionalProperties: false,
              required: ['label', 'value'],
              properties: { label: { type: 'string', minLength: 1 }, value: { type: 'number', minimum: 0, maximum: 1 } },
            },
          },
          version: { type: 'string', minLength: 1 },
          samplingRate: { type: 'number', minimum: 0, maximum: 1 },
        },
      },
    },
    cache: {
      type: 'object',
      additionalProperties: false,
      properties: { claimTtlMs: positiveInt, maxWaitMs: positiveInt, pollMinMs: positiveInt, pollMaxMs: positiveInt },
    },
  },
} as const;

interface FileEndpoint extends Partial<Omit<JudgeEndpointConfig, 'limiter' | 'breaker'>> {
  name: string;
  baseUrl: string;
  model: string;
  apiKeyEnv?: string;
  limiter?: JudgeEndpointConfig['limiter'];
  breaker?: BreakerOptions;
}

interface FileRubric {
  id: string;
  name: string;
  description?: string;
  direction?: RubricDefinition['direction'];
  inputs: RubricDefinition['inputs'];
  criteria: string;
  scale?: { min: number; max: number };
  labels?: { label: string; value: number }[];
  version?: string;
  samplingRate?: number;
}

interface JudgeFile {
  endpoints?: FileEndpoint[];
  defaultEndpoint?: string;
  dimensions?: Record<string, JudgeDimensionConfig>;
  prices?: Record<string, ModelPrice>;
  rubrics?: FileRubric[];
  cache?: JudgeCacheConfig;
}

export const DEFAULT_TIMEOUT_MS = 30_000;
export const DEFAULT_CONCURRENCY = 8;

function intFromEnv(env: Env, name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 1) throw new ConfigError(`${name} must be an integer >= 1, got "${raw}"`);
  return value;
}

function toRubric(r: FileRubric): RubricDefinition {
  if (r.scale && r.labels) throw new ConfigError(`judge rubric "${r.id}": give either scale or labels, not both`);
  let scale: RubricDefinition['scale'];
  if (r.labels) {
    if (new Set(r.labels.map((l) => l.label)).size !== r.labels.length) throw new ConfigError(`judge rubric "${r.id}": labels must be unique`);
    scale = { kind: 'labels', labels: r.labels };
  } else {
    const { min, max } = r.scale ?? { min: 1, max: 5 };
    if (!(max > min) || max - min > 100) throw new ConfigError(`judge rubric "${r.id}": scale needs min < max (at most 100 points)`);
    scale = { kind: 'likert', min, max };
  }
  return {
    id: r.id,
    name: r.name,
    description: r.description ?? r.name,
    direction: r.direction ?? 'higher_is_better',
    inputs: r.inputs,
    criteria: r.criteria,
    scale,
    version: r.version ?? '1',
    ...(r.samplingRate === undefined ? {} : { samplingRate: r.samplingRate }),
  };
}

/**
 * Reads the judge configuration from the environment (and the file it names). Returns undefined
 * when no judge is configured. Throws ConfigError naming the failing field otherwise.
 */
export function loadJudgeConfig(env: Env = process.env, readFile: (path: string) => string = (p) => fs.readFileSync(p, 'utf8')): JudgeConfig | undefined {
  let file: JudgeFile = {};
  const path = env.EVALBOX_JUDGE_CONFIG;
  if (path) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(readFile(path));
    } catch (error) {
      throw new ConfigError(`EVALBOX_JUDGE_CONFIG: cannot read ${path} as JSON`, error);
    }
    const validate = createAjv().compile(fileSchema);
    if (!validate(parsed)) {
      const detail = toFieldErrors(validate.errors)
        .map((e) => `${e.pointer} ${e.detail}`)
        .join('; ');
      throw new ConfigError(`EVALBOX_JUDGE_CONFIG ${path} is invalid: ${detail}`);
    }
    file = parsed as JudgeFile;
  }

  const envTimeout = intFromEnv(env, 'EVALBOX_JUDGE_TIMEOUT_MS', DEFAULT_TIMEOUT_MS);
  const envConcurrency = intFromEnv(env, 'EVALBOX_JUDGE_CONCURRENCY', DEFAULT_CONCURRENCY);
  let rawEndpoints: FileEndpoint[] = file.endpoints ?? [];
  if (rawEndpoints.length === 0 && env.EVALBOX_JUDGE_BASE_URL) {
    if (!/^https?:\/\//.test(env.EVALBOX_JUDGE_BASE_URL))
      throw new ConfigError(`EVALBOX_JUDGE_BASE_URL must be an http(s) URL, got "${env.EVALBOX_JUDGE_BASE_URL}"`);
    if (!env.EVALBOX_JUDGE_MODEL) throw new ConfigError('EVALBOX_JUDGE_MODEL is required with EVALBOX_JUDGE_BASE_URL');
    rawEndpoints = [{ name: 'default', baseUrl: env.EVALBOX_JUDGE_BASE_URL, model: env.EVALBOX_JUDGE_MODEL }];
  }
  if (rawEndpoints.length === 0) return undefined;

  const endpoints = rawEndpoints.map((e): JudgeEndpointConfig => {
    const apiKey = e.apiKey ?? (e.apiKeyEnv ? env[e.apiKeyEnv] : undefined) ?? env.EVALBOX_JUDGE_API_KEY;
    if (e.apiKeyEnv && !env[e.apiKeyEnv]) throw new ConfigError(`judge endpoint "${e.name}": environment variable ${e.apiKeyEnv} is not set`);
    return {
      name: e.name,
      baseUrl: e.baseUrl,
      model: e.model,
      ...(apiKey ? { apiKey } : {}),
      maxConcurrency: e.maxConcurrency ?? envConcurrency,
      timeoutMs: e.timeoutMs ?? envTimeout,
      connectTimeoutMs: e.connectTimeoutMs ?? Math.min(10_000, e.timeoutMs ?? envTimeout),
      headers: e.headers ?? {},
      responseFormat: e.responseFormat ?? 'json_schema',
      ...(e.maxOutputTokens ? { maxOutputTokens: e.maxOutputTokens } : {}),
      limiter: e.limiter ?? {},
      breaker: e.breaker ?? {},
    };
  });
  const names = new Set(endpoints.map((e) => e.name));
  if (names.size !== endpoints.length) throw new ConfigError('judge endpoint names must be unique');
  const defaultEndpoint = file.defaultEndpoint ?? (endpoints[0] as JudgeEndpointConfig).name;
  if (!names.has(defaultEndpoint)) throw new ConfigError(`judge defaultEndpoint "${defaultEndpoint}" is not a configured endpoint`);

  const rubrics = [...BUILTIN_RUBRICS, ...(file.rubrics ?? []).map(toRubric)];
  const ids = new Set<string>();
  for (const r of rubrics) {
    if (ids.has(r.id)) throw new ConfigError(`judge rubric id "${r.id}" is defined twice (built-in ids: ${BUILTIN_RUBRICS.map((b) => b.id).join(', ')})`);
    ids.add(r.id);
  }
  const dimensions = file.dimensions ?? {};
  for (const [id, d] of Object.entries(dimensions)) {
    if (!ids.has(id)) throw new ConfigError(`judge dimensions: "${id}" is not a judge rubric`);
    if (d.endpoint && !names.has(d.endpoint)) throw new ConfigError(`judge dimensions: "${id}" uses unknown endpoint "${d.endpoint}"`);
  }
  return { endpoints, defaultEndpoint, dimensions, prices: file.prices ?? {}, rubrics, cache: file.cache ?? {} };
}

/** The judge dimensions this configuration enables, for the dimensions registry. */
export function judgeDimensionDefinitions(config: JudgeConfig): JudgeDimensionDefinition[] {
  return config.rubrics
    .filter((r) => config.dimensions[r.id]?.enabled !== false)
    .map((r) => toDimensionDefinition(r, config.dimensions[r.id]?.samplingRate ?? r.samplingRate ?? 1));
}

/** USD for a call, or null when the model has no price. */
export function costOf(prices: Record<string, ModelPrice>, model: string, inputTokens: number, outputTokens: number): number | null {
  const price = prices[model];
  if (!price) return null;
  return (inputTokens * price.inputPerMTok + outputTokens * price.outputPerMTok) / 1_000_000;
}
