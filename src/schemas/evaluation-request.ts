// JSON Schemas of the ingest API: validated by ajv and published in /openapi.json from the same
// objects, so the document can never drift from what the API enforces.
export const MAX_TEXT_CHARS = 200_000;

export const evaluationRequestSchema = {
  $id: 'https://evalbox.dev/schemas/api/evaluation-request.json',
  title: 'EvaluationRequest',
  type: 'object',
  required: ['response'],
  // The input is a prompt, chat messages, or both.
  anyOf: [{ required: ['prompt'] }, { required: ['messages'] }],
  additionalProperties: false,
  properties: {
    prompt: {
      type: 'string',
      minLength: 1,
      maxLength: MAX_TEXT_CHARS,
      description: 'The input given to the LLM. With `messages` only, the content of the last user message.',
    },
    messages: {
      type: 'array',
      minItems: 1,
      maxItems: 200,
      description: 'The chat the LLM answered, with its tool calls (OpenAI chat format, camelCase).',
      items: {
        type: 'object',
        required: ['role'],
        additionalProperties: false,
        properties: {
          role: { enum: ['system', 'developer', 'user', 'assistant', 'tool'] },
          content: { type: ['string', 'null'], maxLength: MAX_TEXT_CHARS },
          name: { type: 'string', minLength: 1, maxLength: 200 },
          toolCallId: { type: 'string', minLength: 1, maxLength: 200, description: 'For a tool message: the call it answers.' },
          toolCalls: {
            type: 'array',
            maxItems: 50,
            items: {
              type: 'object',
              required: ['id', 'type', 'function'],
              additionalProperties: false,
              properties: {
                id: { type: 'string', minLength: 1, maxLength: 200 },
                type: { const: 'function' },
                function: {
                  type: 'object',
                  required: ['name', 'arguments'],
                  additionalProperties: false,
                  properties: {
                    name: { type: 'string', minLength: 1, maxLength: 200 },
                    arguments: { type: 'string', maxLength: MAX_TEXT_CHARS, description: 'JSON text, as the model produced it.' },
                  },
                },
              },
            },
          },
        },
      },
    },
    response: { type: 'string', maxLength: MAX_TEXT_CHARS, description: 'The LLM output to score.' },
    context: {
      description: 'Retrieved context the response should be grounded in.',
      anyOf: [
        { type: 'string', maxLength: MAX_TEXT_CHARS },
        { type: 'array', maxItems: 100, items: { type: 'string', maxLength: MAX_TEXT_CHARS } },
      ],
    },
    reference: { type: 'string', maxLength: MAX_TEXT_CHARS, description: 'A reference answer, when known.' },
    modelId: { type: 'string', minLength: 1, maxLength: 200 },
    metadata: { type: 'object', description: 'Free-form attributes kept with the evaluation.' },
    dimensions: {
      type: 'array',
      minItems: 1,
      maxItems: 50,
      uniqueItems: true,
      items: { type: 'string', pattern: '^[a-z][a-z0-9_]{0,62}$' },
      description: 'Dimension ids from GET /v1/dimensions; the default set when absent.',
    },
    externalId: { type: 'string', minLength: 1, maxLength: 200, description: 'Idempotency key when no Idempotency-Key header is sent.' },
    tags: { type: 'array', maxItems: 50, uniqueItems: true, items: { type: 'string', minLength: 1, maxLength: 100 } },
    sessionId: { type: 'string', minLength: 1, maxLength: 200, description: 'The conversation or session the call belongs to.' },
    userId: { type: 'string', minLength: 1, maxLength: 200, description: 'The end user of the client application (an id, not personal data).' },
    usage: {
      type: 'object',
      additionalProperties: false,
      description: 'Tokens of the call being judged.',
      properties: {
        inputTokens: { type: 'integer', minimum: 0, maximum: 2_147_483_647 },
        outputTokens: { type: 'integer', minimum: 0, maximum: 2_147_483_647 },
      },
    },
    latencyMs: { type: 'number', minimum: 0, maximum: 1e9, description: 'Latency of the call being judged.' },
    costUsd: { type: 'number', minimum: 0, maximum: 999_999, description: 'Cost of the call being judged, in US dollars.' },
  },
} as const;

export interface ChatMessage {
  role: 'system' | 'developer' | 'user' | 'assistant' | 'tool';
  content?: string | null;
  name?: string;
  toolCallId?: string;
  toolCalls?: { id: string; type: 'function'; function: { name: string; arguments: string } }[];
}

export const batchRequestSchema = {
  $id: 'https://evalbox.dev/schemas/api/evaluation-batch-request.json',
  title: 'EvaluationBatchRequest',
  type: 'object',
  required: ['items'],
  additionalProperties: false,
  properties: {
    // Items are validated one by one so that each gets its own result.
    items: { type: 'array', minItems: 1, items: {} },
  },
} as const;

export interface EvaluationRequest {
  /** Required unless `messages` are given (then derived from them before anything is stored). */
  prompt: string;
  messages?: ChatMessage[];
  tags?: string[];
  sessionId?: string;
  userId?: string;
  usage?: { inputTokens?: number; outputTokens?: number };
  latencyMs?: number;
  costUsd?: number;
  response: string;
  context?: string | string[];
  reference?: string;
  modelId?: string;
  metadata?: Record<string, unknown>;
  dimensions?: string[];
  externalId?: string;
}

/** A score recorded through the API: a person's feedback or a score the client computed itself. */
export const clientScoresRequestSchema = {
  $id: 'https://evalbox.dev/schemas/api/client-scores-request.json',
  title: 'ClientScoresRequest',
  type: 'object',
  required: ['scores'],
  additionalProperties: false,
  properties: {
    scores: {
      type: 'array',
      minItems: 1,
      maxItems: 20,
      items: {
        type: 'object',
        required: ['dimension', 'source'],
        additionalProperties: false,
        anyOf: [{ required: ['value'] }, { required: ['label'] }],
        properties: {
          dimension: {
            type: 'string',
            pattern: '^[a-z][a-z0-9_]{0,62}$',
            description: 'The name of this score; not a dimension evalbox scores itself (GET /v1/dimensions), whose rows belong to its scorers.',
          },
          source: { enum: ['HUMAN', 'CLIENT'], description: 'HUMAN for a person’s feedback, CLIENT for a score computed by the client application.' },
          value: { type: ['number', 'null'], minimum: 0, maximum: 1, description: 'Normalised to 0..1.' },
          label: { type: 'string', minLength: 1, maxLength: 200 },
          direction: { enum: ['higher_is_better', 'lower_is_better'] },
          reasoning: { type: 'string', maxLength: 10_000, description: 'A comment or the reason for the score.' },
          scorerName: {
            type: 'string',
            minLength: 1,
            maxLength: 200,
            description: 'Who or what scored (a reviewer id, a client scorer); defaults to the source in lower case.',
          },
          scorerVersion: { type: 'string', minLength: 1, maxLength: 100, description: 'Defaults to "1".' },
        },
      },
    },
  },
} as const;

export interface ClientScoreInput {
  dimension: string;
  source: 'HUMAN' | 'CLIENT';
  value?: number | null;
  label?: string;
  direction?: 'higher_is_better' | 'lower_is_better';
  reasoning?: string;
  scorerName?: string;
  scorerVersion?: string;
}

export const acceptedSchema = {
  title: 'EvaluationAccepted',
  type: 'object',
  required: ['evaluationId', 'status', 'dimensions', 'links'],
  additionalProperties: false,
  properties: {
    evaluationId: { type: 'string', format: 'uuid' },
    status: { enum: ['PENDING', 'SCORED', 'PARTIALLY_SCORED', 'SCORING_FAILED'] },
    dimensions: { type: 'array', items: { type: 'string' } },
    links: { type: 'object', required: ['self'], additionalProperties: false, properties: { self: { type: 'string' } } },
  },
} as const;

export const problemSchema = {
  title: 'Problem',
  description: 'RFC 9457 problem details.',
  type: 'object',
  required: ['type', 'title', 'status'],
  properties: {
    type: { type: 'string' },
    title: { type: 'string' },
    status: { type: 'integer' },
    detail: { type: 'string' },
    instance: { type: 'string' },
    requestId: { type: 'string', description: 'The X-Request-Id of the request; it is in the server logs too.' },
    errors: {
      type: 'array',
      maxItems: 20,
      description: 'The failing fields (at most 20; `errorsTruncated` says when there were more).',
      items: {
        type: 'object',
        required: ['pointer', 'detail'],
        additionalProperties: false,
        properties: { pointer: { type: 'string', maxLength: 200 }, detail: { type: 'string', maxLength: 200 } },
      },
    },
    errorsTruncated: { type: 'boolean', description: 'Present (true) when more fields failed than `errors` lists.' },
  },
} as const;

/** The prompt of a request that sent only messages: the content of the last user message. */
export function promptOfMessages(messages: readonly ChatMessage[]): string | undefined {
  for (let i = messages.length - 1; i >= 0; i--) {
    const message = messages[i] as ChatMessage;
    if (message.role === 'user' && typeof message.content === 'string' && message.content.length > 0) return message.content;
  }
  return undefined;
}
