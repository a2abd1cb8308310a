// The judge's public surface for the scoring consumer: build it with createJudge from
// loadJudgeConfig, register judge.dimensions in the registry, plug judge.scorers() into the
// consumer, and pause consumption on judge.pressure() / the judge:* events.
export { createJudge, isProviderPressure, type Judge, type JudgeContext, type JudgePressure, type JudgeScorer } from './judge.js';
export { loadJudgeConfig, judgeDimensionDefinitions, costOf, type JudgeConfig, type JudgeEndpointConfig, type ModelPrice } from './config.js';
export { judgeWithCache, pruneJudgeCache, type CacheKey, type JudgeCacheContext, type JudgeRequest } from './cache.js';
export { requestVerdict, parseRetryAfter, type JudgeOutcome } from './client.js';
export { JUDGE_DIMENSIONS, BUILTIN_RUBRICS, compileRubric, type JudgeDimensionDefinition, type JudgeInputs, type RubricDefinition } from './rubrics.js';
export { createJudgeEvents, type JudgeEventEmitter, type JudgeEvents } from './events.js';
export { registerJudgeMetrics, initJudgeGauges } from './metrics.js';
export type { EndpointState } from './endpoint.js';
export { AimdLimiter } from './limiter.js';
export { CircuitBreaker } from './breaker.js';
export { ManualClock, systemClock, type Clock } from './clock.js';
