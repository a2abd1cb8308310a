// Generated from src/schemas/events/*.json by scripts/generate-event-types.ts (npm run generate:event-types).
// Do not edit: change the schema and generate again; test/unit/event-types.test.ts fails when this file is stale.

/** The data of the evaluation.client_scored event (schema version 1). */

/**
 * Scores recorded through the API by a person (HUMAN) or the client application (CLIENT), as stored after the upsert.
 */
export interface EvaluationClientScoredData {
  schemaVersion: number;
  evaluationId: string;
  applicationId: string;
  scores: ClientScore[];
  recordedAt: string;
}
export interface ClientScore {
  dimension: string;
  status?: 'COMPLETED';
  value?: number | null;
  label?: string | null;
  direction?: 'higher_is_better' | 'lower_is_better' | null;
  reasoning?: string | null;
  source: 'HUMAN' | 'CLIENT';
  scorerName: string;
  scorerVersion: string;
}

/** The data of the evaluation.created event (schema version 1). */

export interface EvaluationCreatedData {
  schemaVersion: number;
  evaluationId: string;
  applicationId: string;
  modelId?: string | null;
  prompt: string;
  response: string;
  context?: string | string[] | null;
  reference?: string | null;
  metadata?: {
    [k: string]: unknown;
  };
  /**
   * @minItems 1
   */
  dimensions: string[];
  createdAt: string;
  /**
   * The chat messages sent with the request (role, content, name, toolCallId, toolCalls), when it had them.
   */
  messages?: {
    [k: string]: unknown;
  }[];
  tags?: string[];
  sessionId?: string;
  userId?: string;
  /**
   * Tokens of the call being judged.
   */
  usage?: {
    inputTokens?: number;
    outputTokens?: number;
  };
  /**
   * Latency of the call being judged.
   */
  latencyMs?: number;
  /**
   * Cost of the call being judged, in US dollars.
   */
  costUsd?: number;
}

/** The data of the evaluation.deleted event (schema version 1). */

/**
 * The evaluation and its scores were deleted through the API; a consumer that kept a copy of its text or results deletes it too.
 */
export interface EvaluationDeletedData {
  schemaVersion: number;
  evaluationId: string;
  applicationId: string;
  deletedAt: string;
}

/** The data of the evaluation.scored event (schema version 1). */

export interface EvaluationScoredData {
  schemaVersion: number;
  evaluationId: string;
  applicationId: string;
  status: 'SCORED' | 'PARTIALLY_SCORED' | 'SCORING_FAILED';
  scores: ScoreResult[];
  scoredAt: string;
}
export interface ScoreResult {
  dimension: string;
  status: 'COMPLETED' | 'SKIPPED' | 'ERROR';
  value?: number | null;
  label?: string | null;
  direction?: 'higher_is_better' | 'lower_is_better' | null;
  reasoning?: string | null;
  source?: 'LLM_JUDGE' | 'HEURISTIC';
  scorerName?: string;
  scorerVersion?: string;
  errorCode?: string | null;
}
