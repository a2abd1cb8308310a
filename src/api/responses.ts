// Response mapping: database rows and results to the JSON bodies the OpenAPI document describes.
import type { DimensionRegistry } from '../dimensions.js';
import { toScoreResult } from '../schemas/events.js';
import type { CursorCodec } from './cursor.js';
import type { IngestResult } from './evaluations.js';
import type { findEvaluation, listEvaluationsPage, listScoredPage } from './queries.js';

type Found = NonNullable<Awaited<ReturnType<typeof findEvaluation>>>;
type Page = Awaited<ReturnType<typeof listEvaluationsPage>> | Awaited<ReturnType<typeof listScoredPage>>;

export const evaluationLink = (id: string) => `/v1/evaluations/${id}`;

export function acceptedBody(result: IngestResult) {
  return {
    evaluationId: result.evaluationId,
    status: result.status,
    dimensions: result.dimensions,
    links: { self: evaluationLink(result.evaluationId) },
  };
}

export function evaluationBody({ evaluation: e, scores }: Found) {
  return {
    evaluationId: e.id,
    applicationId: e.application_id,
    status: e.status,
    modelId: e.model_id,
    prompt: e.prompt,
    response: e.response,
    context: e.context,
    reference: e.reference,
    metadata: e.metadata,
    dimensions: e.dimensions,
    externalId: e.external_id,
    createdAt: e.created_at,
    scoredAt: e.scored_at,
    messages: e.messages,
    tags: e.tags,
    sessionId: e.session_id,
    userId: e.user_id,
    usage: e.call_input_tokens === null && e.call_output_tokens === null ? null : { inputTokens: e.call_input_tokens, outputTokens: e.call_output_tokens },
    latencyMs: e.call_latency_ms,
    costUsd: e.call_cost_usd === null ? null : Number(e.call_cost_usd),
    scores: scores.map(scoreBody),
  };
}

type ScoreRow = Found['scores'][number];

export function scoreBody(s: ScoreRow) {
  return {
    ...toScoreResult(s),
    judgeModel: s.judge_model,
    attempts: s.attempts,
    inputTokens: s.input_tokens,
    outputTokens: s.output_tokens,
    latencyMs: s.latency_ms,
    costUsd: s.cost_usd === null ? null : Number(s.cost_usd),
    cacheHit: s.cache_hit,
    updatedAt: s.updated_at,
  };
}

export function pageBody(page: Page, cursors: CursorCodec, applicationId: string) {
  return {
    items: page.items.map((e) => ({
      evaluationId: e.id,
      status: e.status,
      modelId: e.model_id,
      dimensions: e.dimensions,
      externalId: e.external_id,
      createdAt: e.created_at,
      scoredAt: e.scored_at,
    })),
    nextCursor: page.next ? cursors.encode(page.next, applicationId) : null,
    hasMore: page.hasMore,
  };
}

export function dimensionsBody(dimensions: DimensionRegistry) {
  return {
    defaults: dimensions.defaults,
    items: dimensions.list().map((d) => ({
      id: d.id,
      name: d.name,
      description: d.description,
      scale: d.scale,
      direction: d.direction,
      requiredInputs: d.requiredInputs,
      scorerKind: d.scorerKind,
      scorerName: d.scorerName,
      scorerVersion: d.scorerVersion,
      samplingRate: d.samplingRate,
    })),
  };
}
