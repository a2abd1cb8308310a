// The OpenAPI 3.1 document, built from the same JSON Schema objects ajv validates with and the
// response schemas the test suite checks every response against (src/schemas/).
import {
  batchItemResultSchema,
  batchResultSchema,
  clientScoresRecordedSchema,
  dimensionsSchema,
  evaluationPageSchema,
  evaluationSchema,
  evaluationSummarySchema,
  scoreSchema,
} from '../schemas/api-responses.js';
import { acceptedSchema, batchRequestSchema, clientScoresRequestSchema, evaluationRequestSchema, problemSchema } from '../schemas/evaluation-request.js';
import { evaluationClientScoredSchema, evaluationCreatedSchema, evaluationDeletedSchema, evaluationScoredSchema } from '../schemas/events.js';

// OpenAPI components are referenced by name; $id (and an event schema's version, which its
// title and dataschema carry) are JSON Schema details they do not need.
function component<T extends object>(schema: T): Omit<T, '$id' | 'version'> {
  const { $id: _id, version: _version, ...rest } = schema as T & { $id?: string; version?: number };
  return rest;
}

const schemaRef = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const headerRef = (name: string) => ({ $ref: `#/components/headers/${name}` });
const responseRef = (name: string) => ({ $ref: `#/components/responses/${name}` });
const json = (name: string) => ({ 'application/json': { schema: schemaRef(name) } });
const problemContent = { 'application/problem+json': { schema: schemaRef('Problem') } };

/** Headers on every answer to an authenticated request. */
const quotaHeaders = { 'X-Request-Id': headerRef('X-Request-Id'), RateLimit: headerRef('RateLimit'), 'RateLimit-Policy': headerRef('RateLimit-Policy') };

const problem = (description: string, headers: Record<string, unknown> = {}) => ({
  description,
  headers: { 'X-Request-Id': headerRef('X-Request-Id'), ...headers },
  content: problemContent,
});

/** The statuses every authenticated operation can answer besides its own. */
const commonErrors = {
  '401': responseRef('Unauthorized'),
  '405': responseRef('MethodNotAllowed'),
  '429': responseRef('TooManyRequests'),
  '500': responseRef('InternalError'),
  '503': responseRef('Unavailable'),
};

export function buildOpenApiDocument(version: string) {
  return {
    openapi: '3.1.0',
    info: {
      title: 'evalbox ingest API',
      version,
      description:
        'Submit LLM interactions for scoring. 202 means the evaluation and its event are durably committed. Limits, quotas, idempotency and deletion are described in docs/api.md.',
      contact: { name: 'evalbox maintainers', url: 'https://evalbox.dev' },
      license: { name: 'Apache-2.0', identifier: 'Apache-2.0' },
    },
    servers: [{ url: '/', description: 'The API process itself (evalbox api).' }],
    tags: [
      { name: 'evaluations', description: 'Submit, read and list evaluations.' },
      { name: 'meta', description: 'What the API offers: the dimensions registry and this document.' },
    ],
    security: [{ apiKey: [] }],
    components: {
      securitySchemes: { apiKey: { type: 'http', scheme: 'bearer', description: 'An evalbox API key (evalbox keys create --app APP).' } },
      schemas: {
        EvaluationRequest: component(evaluationRequestSchema),
        EvaluationBatchRequest: {
          ...component(batchRequestSchema),
          properties: { items: { type: 'array', minItems: 1, items: schemaRef('EvaluationRequest') } },
        },
        EvaluationAccepted: acceptedSchema,
        BatchItemResult: batchItemResultSchema,
        EvaluationBatchResult: batchResultSchema,
        Evaluation: evaluationSchema,
        EvaluationSummary: evaluationSummarySchema,
        EvaluationPage: evaluationPageSchema,
        Score: scoreSchema,
        ClientScoresRequest: component(clientScoresRequestSchema),
        ClientScoresRecorded: clientScoresRecordedSchema,
        Dimensions: dimensionsSchema,
        Problem: problemSchema,
        // The events on Kafka, from the same versioned schemas ajv validates (src/schemas/events/).
        EvaluationCreatedEvent: component(evaluationCreatedSchema),
        EvaluationScoredEvent: component(evaluationScoredSchema),
        EvaluationClientScoredEvent: component(evaluationClientScoredSchema),
        EvaluationDeletedEvent: component(evaluationDeletedSchema),
      },
      headers: {
        'X-Request-Id': {
          description: 'Identifies the request in the server logs; the client’s own value is kept when it is 1-128 characters of [A-Za-z0-9._-].',
          required: true,
          schema: { type: 'string', maxLength: 128 },
        },
        Location: { description: 'The evaluation’s URL.', required: true, schema: { type: 'string' } },
        'Idempotent-Replayed': { description: 'Sent (true) when an earlier request with the same key created the evaluation.', schema: { const: 'true' } },
        'Retry-After': { description: 'Seconds to wait before retrying.', required: true, schema: { type: 'string', pattern: '^[0-9]+$' } },
        RateLimit: {
          description:
            'IETF RateLimit header field: the application’s remaining quota units (r) and seconds until the bucket is full again or, on a 429, holds enough (t).',
          schema: { type: 'string', pattern: '^"app";r=[0-9]+;t=[0-9]+$' },
        },
        'RateLimit-Policy': {
          description: 'IETF RateLimit-Policy header field: the bucket size (q) and the seconds it takes to refill (w).',
          schema: { type: 'string', pattern: '^"app";q=[0-9]+;w=[0-9]+$' },
        },
        Allow: { description: 'The methods the path serves.', required: true, schema: { type: 'string' } },
        'WWW-Authenticate': { description: 'Always `Bearer`.', required: true, schema: { const: 'Bearer' } },
      },
      responses: {
        BadRequest: problem('Invalid input; `errors` names each failing field (at most 20).'),
        Unauthorized: problem('Missing, malformed, unknown or revoked API key.', { 'WWW-Authenticate': headerRef('WWW-Authenticate') }),
        NotFound: problem('No such evaluation (or another application’s).'),
        MethodNotAllowed: problem('The path does not serve this method; `Allow` names those it does.', { Allow: headerRef('Allow') }),
        ExternalIdConflict: problem('The externalId already names an evaluation created from a different body.'),
        IdempotencyKeyReused: problem('The Idempotency-Key was already used with a different request body.'),
        TooLarge: problem('The body is over the limit (the connection is closed).'),
        UnsupportedMediaType: problem('The body is not application/json.'),
        TooManyRequests: problem('The application is over its rate or in-flight quota.', {
          'Retry-After': headerRef('Retry-After'),
          RateLimit: headerRef('RateLimit'),
          'RateLimit-Policy': headerRef('RateLimit-Policy'),
        }),
        InternalError: problem('An unexpected server error (logged with the request id).'),
        Unavailable: problem('The database is unavailable or too slow; retry after Retry-After.', { 'Retry-After': headerRef('Retry-After') }),
      },
    },
    paths: {
      '/v1/evaluations': {
        post: {
          operationId: 'createEvaluation',
          tags: ['evaluations'],
          summary: 'Submit one evaluation',
          description: 'Stores the evaluation and its evaluation.created event in one transaction; 202 means both are committed.',
          parameters: [
            {
              name: 'Idempotency-Key',
              in: 'header',
              required: false,
              description: 'A replay with the same key answers with the original evaluation.',
              schema: { type: 'string', minLength: 1, maxLength: 200 },
            },
          ],
          requestBody: { required: true, content: json('EvaluationRequest') },
          responses: {
            '202': {
              description: 'Accepted: the evaluation and its outbox event are committed.',
              headers: { ...quotaHeaders, Location: headerRef('Location'), 'Idempotent-Replayed': headerRef('Idempotent-Replayed') },
              content: json('EvaluationAccepted'),
            },
            '400': responseRef('BadRequest'),
            '409': responseRef('ExternalIdConflict'),
            '413': responseRef('TooLarge'),
            '415': responseRef('UnsupportedMediaType'),
            '422': responseRef('IdempotencyKeyReused'),
            ...commonErrors,
          },
        },
        get: {
          operationId: 'listEvaluations',
          tags: ['evaluations'],
          summary: 'List evaluations of the key’s application, in stable pages',
          description: 'Pages in commit order; keep nextCursor and ask again to receive rows committed later (an empty page means caught up).',
          parameters: [
            { name: 'applicationId', in: 'query', description: 'Must be the key’s own application (else 404).', schema: { type: 'string' } },
            {
              name: 'status',
              in: 'query',
              description: 'Only evaluations in this status.',
              schema: { enum: ['PENDING', 'SCORED', 'PARTIALLY_SCORED', 'SCORING_FAILED'] },
            },
            {
              name: 'since',
              in: 'query',
              description: 'Only evaluations created at or after this RFC 3339 date-time.',
              schema: { type: 'string', format: 'date-time' },
            },
            {
              name: 'scoredSince',
              in: 'query',
              description:
                'Poll for results: only evaluations whose result was decided at or after this RFC 3339 date-time (at most 24 hours ago), in the order they were scored. Keep nextCursor and pass it alone to receive results decided later.',
              schema: { type: 'string', format: 'date-time' },
            },
            {
              name: 'cursor',
              in: 'query',
              description: 'A nextCursor returned by this endpoint; it keeps the order it was issued in (created, or scored with scoredSince).',
              schema: { type: 'string' },
            },
            { name: 'limit', in: 'query', description: 'Page size.', schema: { type: 'integer', minimum: 1, maximum: 500, default: 50 } },
          ],
          responses: {
            '200': { description: 'A page.', headers: quotaHeaders, content: json('EvaluationPage') },
            '400': responseRef('BadRequest'),
            '404': problem('`applicationId` names another application.'),
            ...commonErrors,
          },
        },
      },
      '/v1/evaluations:batch': {
        post: {
          operationId: 'createEvaluations',
          tags: ['evaluations'],
          summary: 'Submit several evaluations; one result per item',
          description: 'Each item gets the result a single POST of it would have had; each item costs one unit of the rate quota.',
          parameters: [
            {
              name: 'Idempotency-Key',
              in: 'header',
              required: false,
              description: 'Item i is idempotent under this key and its index: a replay of the batch answers with the original evaluations.',
              schema: { type: 'string', minLength: 1, maxLength: 200 },
            },
          ],
          requestBody: { required: true, content: json('EvaluationBatchRequest') },
          responses: {
            '207': { description: 'One result per item, in request order.', headers: quotaHeaders, content: json('EvaluationBatchResult') },
            '400': responseRef('BadRequest'),
            '413': responseRef('TooLarge'),
            '415': responseRef('UnsupportedMediaType'),
            ...commonErrors,
          },
        },
      },
      '/v1/evaluations:stream': {
        get: {
          operationId: 'streamResults',
          tags: ['evaluations'],
          summary: 'Stream the application’s results as server-sent events',
          description:
            'Each result as it is decided: `event: evaluation.scored`, `data:` an EvaluationScoredEvent, `id:` an opaque position. Reconnect with Last-Event-ID to resume after the last event received, with no loss and no duplicate. Without Last-Event-ID the stream starts with the results decided from now on. Idle streams send a comment line (heartbeat) every 15 s; at most 4 streams per application and process (429 beyond).',
          parameters: [
            {
              name: 'Last-Event-ID',
              in: 'header',
              required: false,
              description: 'The id of the last event received (or a nextCursor of a scoredSince list).',
              schema: { type: 'string' },
            },
          ],
          responses: {
            '200': {
              description: 'The stream (text/event-stream); its events carry EvaluationScoredEvent data.',
              headers: quotaHeaders,
              content: { 'text/event-stream': { schema: { type: 'string', description: 'Server-sent events; see EvaluationScoredEvent.' } } },
            },
            '400': responseRef('BadRequest'),
            ...commonErrors,
          },
        },
      },
      '/v1/evaluations/{id}': {
        get: {
          operationId: 'getEvaluation',
          tags: ['evaluations'],
          summary: 'One evaluation with its scores',
          description: 'Another application’s evaluation answers 404, as an unknown one does.',
          parameters: [{ name: 'id', in: 'path', required: true, description: 'The evaluationId.', schema: { type: 'string' } }],
          responses: {
            '200': { description: 'The evaluation and its scores.', headers: quotaHeaders, content: json('Evaluation') },
            '404': responseRef('NotFound'),
            ...commonErrors,
          },
        },
        delete: {
          operationId: 'deleteEvaluation',
          tags: ['evaluations'],
          summary: 'Delete an evaluation and its scores',
          description:
            'Removes the evaluation and its scores and publishes evaluation.deleted on the events and results topics, in one transaction. Where the text still exists afterwards, and for how long, is in docs/api.md (Deletion).',
          parameters: [{ name: 'id', in: 'path', required: true, description: 'The evaluationId.', schema: { type: 'string' } }],
          responses: {
            '204': { description: 'Deleted.', headers: quotaHeaders },
            '404': responseRef('NotFound'),
            ...commonErrors,
          },
        },
      },
      '/v1/evaluations/{id}/scores': {
        post: {
          operationId: 'recordClientScores',
          tags: ['evaluations'],
          summary: 'Record scores from a person or the client',
          description:
            'Upserts each score on (evaluation, dimension) with source HUMAN or CLIENT and publishes evaluation.client_scored on the results topic, in one transaction. A dimension the evaluation asked evalbox to score is refused (409).',
          parameters: [{ name: 'id', in: 'path', required: true, description: 'The evaluationId.', schema: { type: 'string' } }],
          requestBody: { required: true, content: json('ClientScoresRequest') },
          responses: {
            '200': { description: 'The scores as stored.', headers: quotaHeaders, content: json('ClientScoresRecorded') },
            '400': responseRef('BadRequest'),
            '404': responseRef('NotFound'),
            '409': problem('A dimension of these scores is one evalbox scores for this evaluation.'),
            '413': responseRef('TooLarge'),
            '415': responseRef('UnsupportedMediaType'),
            ...commonErrors,
          },
        },
      },
      '/v1/dimensions': {
        get: {
          operationId: 'listDimensions',
          tags: ['meta'],
          summary: 'The dimensions evalbox can score',
          description: 'Built-in dimensions and the judge rubrics the scorers published; needs no key.',
          security: [],
          responses: {
            '200': { description: 'The registry.', headers: { 'X-Request-Id': headerRef('X-Request-Id') }, content: json('Dimensions') },
            '405': responseRef('MethodNotAllowed'),
          },
        },
      },
      '/openapi.json': {
        get: {
          operationId: 'getOpenApiDocument',
          tags: ['meta'],
          summary: 'This document',
          description: 'The OpenAPI 3.1 document; needs no key.',
          security: [],
          responses: {
            '200': {
              description: 'The document.',
              headers: { 'X-Request-Id': headerRef('X-Request-Id') },
              content: { 'application/json': { schema: { type: 'object' } } },
            },
            '405': responseRef('MethodNotAllowed'),
          },
        },
      },
    },
  };
}
