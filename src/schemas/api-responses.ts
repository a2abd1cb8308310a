// JSON Schemas of the API's response bodies, published in /openapi.json; the test suite checks
// every response it receives against them, so the document and the API cannot drift apart.
const EVALUATION_STATUS = { enum: ['PENDING', 'SCORED', 'PARTIALLY_SCORED', 'SCORING_FAILED'] } as const;
const nullable = (type: string, extra: object = {}) => ({ type: [type, 'null'], ...extra });
const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });

export const scoreSchema = {
  title: 'Score',
  type: 'object',
  required: ['dimension', 'status', 'value', 'source', 'scorerName', 'scorerVersion', 'updatedAt'],
  properties: {
    dimension: { type: 'string' },
    status: { enum: ['PENDING', 'COMPLETED', 'SKIPPED', 'ERROR'] },
    value: nullable('number', { minimum: 0, maximum: 1 }),
    label: nullable('string'),
    direction: { enum: ['higher_is_better', 'lower_is_better', null] },
    reasoning: nullable('string'),
    source: { type: 'string', description: 'LLM_JUDGE, HEURISTIC, HUMAN or CLIENT.' },
    scorerName: { type: 'string' },
    scorerVersion: { type: 'string' },
    errorCode: nullable('string'),
    judgeModel: nullable('string'),
    attempts: { type: 'integer' },
    inputTokens: nullable('integer'),
    outputTokens: nullable('integer'),
    latencyMs: nullable('integer'),
    costUsd: nullable('number'),
    cacheHit: { type: 'boolean' },
    updatedAt: { type: 'string', format: 'date-time' },
  },
} as const;

export const evaluationSchema = {
  title: 'Evaluation',
  type: 'object',
  required: ['evaluationId', 'applicationId', 'status', 'prompt', 'response', 'dimensions', 'createdAt', 'scores'],
  properties: {
    evaluationId: { type: 'string', format: 'uuid' },
    applicationId: { type: 'string' },
    status: EVALUATION_STATUS,
    modelId: nullable('string'),
    prompt: { type: 'string' },
    response: { type: 'string' },
    context: { anyOf: [{ type: 'string' }, { type: 'array', items: { type: 'string' } }, { type: 'null' }] },
    reference: nullable('string'),
    metadata: { type: 'object' },
    dimensions: { type: 'array', items: { type: 'string' } },
    externalId: nullable('string'),
    createdAt: { type: 'string', format: 'date-time' },
    scoredAt: nullable('string', { format: 'date-time' }),
    messages: { type: ['array', 'null'], items: { type: 'object' }, description: 'The chat messages sent, as sent.' },
    tags: { type: ['array', 'null'], items: { type: 'string' } },
    sessionId: nullable('string'),
    userId: nullable('string'),
    usage: {
      type: ['object', 'null'],
      description: 'Tokens of the call being judged.',
      properties: { inputTokens: nullable('integer'), outputTokens: nullable('integer') },
    },
    latencyMs: nullable('number', { description: 'Latency of the call being judged.' }),
    costUsd: nullable('number', { description: 'Cost of the call being judged, in US dollars.' }),
    scores: { type: 'array', items: ref('Score') },
  },
} as const;

export const evaluationSummarySchema = {
  title: 'EvaluationSummary',
  type: 'object',
  required: ['evaluationId', 'status', 'dimensions', 'createdAt'],
  properties: {
    evaluationId: { type: 'string', format: 'uuid' },
    status: EVALUATION_STATUS,
    modelId: nullable('string'),
    dimensions: { type: 'array', items: { type: 'string' } },
    externalId: nullable('string'),
    createdAt: { type: 'string', format: 'date-time' },
    scoredAt: nullable('string', { format: 'date-time' }),
  },
} as const;

export const evaluationPageSchema = {
  title: 'EvaluationPage',
  type: 'object',
  required: ['items', 'nextCursor', 'hasMore'],
  additionalProperties: false,
  properties: {
    items: { type: 'array', items: ref('EvaluationSummary') },
    nextCursor: nullable('string', { description: 'Opaque; pass it back as `cursor` to continue or to poll for later rows.' }),
    hasMore: { type: 'boolean' },
  },
} as const;

export const batchItemResultSchema = {
  title: 'BatchItemResult',
  type: 'object',
  required: ['index', 'status', 'body'],
  additionalProperties: false,
  properties: {
    index: { type: 'integer', minimum: 0, description: 'Position of the item in the request.' },
    status: { type: 'integer', enum: [202, 400, 409, 413, 422, 500, 503], description: 'What a single POST of this item would have answered.' },
    replayed: { const: true, description: 'Present when an earlier request with the same idempotency key created the evaluation.' },
    body: { oneOf: [ref('EvaluationAccepted'), ref('Problem')] },
  },
} as const;

export const batchResultSchema = {
  title: 'EvaluationBatchResult',
  type: 'object',
  required: ['results'],
  additionalProperties: false,
  properties: { results: { type: 'array', items: ref('BatchItemResult') } },
} as const;

export const dimensionsSchema = {
  title: 'Dimensions',
  type: 'object',
  required: ['defaults', 'items'],
  properties: {
    defaults: { type: 'array', items: { type: 'string' } },
    items: {
      type: 'array',
      items: {
        type: 'object',
        required: ['id', 'name', 'scale', 'direction', 'requiredInputs', 'scorerKind', 'scorerVersion'],
        properties: {
          id: { type: 'string' },
          name: { type: 'string' },
          description: { type: 'string' },
          scale: { type: 'object', properties: { min: { type: 'number' }, max: { type: 'number' } } },
          direction: { enum: ['higher_is_better', 'lower_is_better'] },
          requiredInputs: { type: 'array', items: { type: 'string' } },
          scorerKind: { type: 'string' },
          scorerName: { type: 'string' },
          scorerVersion: { type: 'string' },
          samplingRate: { type: 'number', minimum: 0, maximum: 1 },
        },
      },
    },
  },
} as const;

export const clientScoresRecordedSchema = {
  title: 'ClientScoresRecorded',
  type: 'object',
  required: ['evaluationId', 'scores'],
  additionalProperties: false,
  properties: {
    evaluationId: { type: 'string', format: 'uuid' },
    scores: { type: 'array', items: ref('Score'), description: 'The scores as stored after the upsert, by dimension.' },
  },
} as const;
