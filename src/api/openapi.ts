// The OpenAPI 3.1 document, built from the same JSON Schema objects ajv validates with.
import { evaluationCreatedSchema, evaluationScoredSchema } from '../schemas/events.js';
import { acceptedSchema, batchRequestSchema, evaluationRequestSchema, problemSchema } from '../schemas/evaluation-request.js';

// OpenAPI components are referenced by name; $id (and an event schema's version, which its
// title and dataschema carry) are JSON Schema details they do not need.
function component<T extends object>(schema: T): Omit<T, '$id' | 'version'> {
  const { $id: _id, version: _version, ...rest } = schema as T & { $id?: string; version?: number };
  return rest;
}

const problem = (description: string) => ({ description, content: { 'application/problem+json': { schema: { $ref: '#/components/schemas/Problem' } } } });
const json = (ref: string) => ({ 'application/json': { schema: { $ref: `#/components/schemas/${ref}` } } });

export function buildOpenApiDocument(version: string) {
  return {
    openapi: '3.1.0',
    info: {
      title: 'evalbox ingest API',
      version,
      description: 'Submit LLM interactions for scoring. 202 means the evaluation and its event are durably committed.',
    },
    components: {
      securitySchemes: { apiKey: { type: 'http', scheme: 'bearer', description: 'An evalbox API key (evalbox keys create --app APP).' } },
      schemas: {
        EvaluationRequest: component(evaluationRequestSchema),
        EvaluationBatchRequest: {
          ...component(batchRequestSchema),
          properties: { items: { type: 'array', minItems: 1, items: { $ref: '#/components/schemas/EvaluationRequest' } } },
        },
        EvaluationAccepted: acceptedSchema,
        Problem: problemSchema,
        EvaluationCreatedEvent: component(evaluationCreatedSchema),
        EvaluationScoredEvent: component(evaluationScoredSchema),
      },
    },
    security: [{ apiKey: [] }],
    paths: {
      '/v1/evaluations': {
        post: {
          summary: 'Submit one evaluation',
          parameters: [{ name: 'Idempotency-Key', in: 'header', required: false, schema: { type: 'string', maxLength: 200 } }],
          requestBody: { required: true, content: json('EvaluationRequest') },
          responses: {
            '202': { description: 'Accepted: the evaluation and its outbox event are committed.', content: json('EvaluationAccepted') },
            '400': problem('Invalid body; `errors` names each failing field.'),
            '401': problem('Missing or invalid API key.'),
            '413': problem('Body over the limit.'),
            '415': problem('Body is not JSON.'),
            '503': problem('Database unavailable; retry after Retry-After.'),
          },
        },
        get: {
          summary: 'List evaluations of the key’s application, in stable pages',
          parameters: [
            { name: 'applicationId', in: 'query', schema: { type: 'string' } },
            { name: 'status', in: 'query', schema: { enum: ['PENDING', 'SCORED', 'PARTIALLY_SCORED', 'SCORING_FAILED'] } },
            { name: 'since', in: 'query', schema: { type: 'string', format: 'date-time' } },
            { name: 'cursor', in: 'query', schema: { type: 'string' } },
            { name: 'limit', in: 'query', schema: { type: 'integer', minimum: 1, maximum: 500, default: 50 } },
          ],
          responses: {
            '200': { description: 'A page; keep nextCursor to continue (an empty page means caught up).' },
            '400': problem('Bad query parameter.'),
            '401': problem('Missing or invalid API key.'),
          },
        },
      },
      '/v1/evaluations:batch': {
        post: {
          summary: 'Submit several evaluations; one result per item',
          requestBody: { required: true, content: json('EvaluationBatchRequest') },
          responses: {
            '207': { description: 'One result per item, each with its own status (202 with the accepted body, or a problem: 400, 413, 503).' },
            '400': problem('Not a batch, or more items than the batch limit.'),
            '401': problem('Missing or invalid API key.'),
            '413': problem('Body over the limit.'),
            '415': problem('Body is not JSON.'),
            '503': problem('Database unavailable and no item committed; retry the whole batch after Retry-After.'),
          },
        },
      },
      '/v1/evaluations/{id}': {
        get: {
          summary: 'One evaluation with its scores',
          parameters: [{ name: 'id', in: 'path', required: true, schema: { type: 'string', format: 'uuid' } }],
          responses: { '200': { description: 'The evaluation and its scores.' }, '404': problem('No such evaluation for this application.') },
        },
      },
      '/v1/dimensions': { get: { summary: 'The dimensions evalbox can score', security: [], responses: { '200': { description: 'The registry.' } } } },
    },
  };
}
