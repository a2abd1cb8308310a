// What the API fuzz sends: generated bad requests of every kind an untrusted client can make,
// and the properties every answer must have.
import fc from 'fast-check';
import type { RawRequest, RawResponse } from './raw-http.js';

export interface FuzzTargets {
  key: string; // a valid key of tenant A
  revokedKey: string;
  otherTenantId: string; // an evaluation of tenant B
  otherTenantCursor: string; // a list cursor that tenant B was given
  otherTenantMarker: string; // text only tenant B's evaluation contains
}

const deepNesting = (depth: number, open: string, close: string) => open.repeat(depth) + close.repeat(depth);

const validBody = { prompt: 'What is 2+2?', response: '4', context: ['2+2=4'], modelId: 'm', metadata: { a: 1 } };

/** Bodies: valid ones mutated, wrong types, huge, deep, invalid UTF-8, NUL, lone surrogates, truncated. */
const body: fc.Arbitrary<Buffer> = fc.oneof(
  fc.constant(Buffer.alloc(0)),
  fc.jsonValue({ maxDepth: 4 }).map((v) => Buffer.from(JSON.stringify(v) ?? 'null')),
  fc
    .record({
      field: fc.constantFrom('prompt', 'response', 'context', 'modelId', 'metadata', 'dimensions', 'reference', 'externalId', 'extra'),
      value: fc.anything(),
    })
    .map(({ field, value }) => Buffer.from(JSON.stringify({ ...validBody, [field]: value }) ?? '{}')),
  fc.integer({ min: 1, max: 20_000 }).map((depth) => Buffer.from(`{"prompt":"p","response":"r","metadata":{"x":${deepNesting(depth, '[', ']')}}}`)),
  fc.integer({ min: 1, max: 5000 }).map((depth) => Buffer.from(deepNesting(depth, '{"a":', '}').replace(/:}/, ':1}'))),
  fc.uint8Array({ minLength: 1, maxLength: 2000 }).map((bytes) => Buffer.from(bytes)),
  fc.constantFrom('\\u0000', '\\ud800', '\\udfff', '\\ud83d', '\u0000', '\uffff').map((s) => Buffer.from(`{"prompt":"a${s}b","response":"${s}"}`)),
  fc.constant(Buffer.concat([Buffer.from('{"prompt":"'), Buffer.from([0xc3, 0x28, 0xff, 0xfe, 0xed, 0xa0, 0x80]), Buffer.from('","response":"r"}')])),
  fc.integer({ min: 0, max: 60 }).map((cut) => Buffer.from(JSON.stringify(validBody).slice(0, cut))),
  fc.integer({ min: 100_000, max: 3_000_000 }).map((n) => Buffer.from(JSON.stringify({ ...validBody, response: 'x'.repeat(n) }))),
  fc.integer({ min: 1000, max: 50_000 }).map((n) => Buffer.from(JSON.stringify({ items: Array.from({ length: n }, () => ({ prompt: 1 })) }))),
  fc
    .array(fc.record({ prompt: fc.oneof(fc.string(), fc.integer()), response: fc.oneof(fc.string(), fc.constant(null)) }), { maxLength: 120 })
    .map((items) => Buffer.from(JSON.stringify({ items }))),
  fc
    .integer({ min: 500, max: 20_000 })
    .map((n) => Buffer.from(JSON.stringify({ prompt: 'p', response: 'r', dimensions: Array.from({ length: n }, (_, i) => `d${i}`) }))),
  fc
    .integer({ min: 100, max: 20_000 })
    .map((n) => Buffer.from(JSON.stringify({ prompt: 'p', response: 'r', metadata: { n: Number(`9${'9'.repeat(n % 400)}`) } }))),
);

const segment = fc.oneof(
  fc.uuid(),
  fc.string({ maxLength: 40 }).map(encodeURIComponent),
  fc.constantFrom(
    '..',
    '%2e%2e',
    '%2e%2e%2f%2e%2e%2fetc%2fpasswd',
    '%00',
    '%ff',
    'a%2fb',
    '.',
    '%',
    '%zz',
    'x'.repeat(9000),
    'urn:uuid:00000000-0000-0000-0000-000000000000',
  ),
);

function paths(t: FuzzTargets): fc.Arbitrary<string> {
  const query = fc.oneof(
    fc.constant(''),
    fc
      .record({
        name: fc.constantFrom('limit', 'since', 'cursor', 'status', 'applicationId', 'updatedSince', 'scoredSince', 'x'),
        value: fc.string({ maxLength: 60 }),
      })
      .map(({ name, value }) => `?${name}=${encodeURIComponent(value)}`),
    fc.constantFrom(
      '?limit=1e2',
      '?limit=0x10',
      '?limit=-1',
      '?limit=99999999999',
      `?cursor=${encodeURIComponent(t.otherTenantCursor)}`,
      '?since=yesterday',
      '?scoredSince=2024-01-01T00:00:00Z',
      '?since=2024-13-45T99:99:99Z',
      '?limit=1&limit=2',
      '?%zz=1',
    ),
  );
  return fc.oneof(
    fc
      .tuple(fc.constantFrom('/v1/evaluations', '/v1/evaluations:batch', '/v1/dimensions', '/openapi.json', '/', '/v1', '/metrics', '/readyz'), query)
      .map(([p, q]) => p + q),
    segment.map((s) => `/v1/evaluations/${s}`),
    segment.map((s) => `/v1/evaluations/${s}/scores`),
    fc.constant(`/v1/evaluations/${t.otherTenantId}`),
    fc.constant(`/v1/evaluations/${t.otherTenantId}/scores`),
    fc.constantFrom(
      '/v1/evaluations/../../../etc/passwd',
      '//v1//evaluations',
      '/v1/evaluations/%2e%2e/%2e%2e/openapi.json',
      '/V1/EVALUATIONS',
      '/v1/evaluations?',
    ),
  );
}

function headers(t: FuzzTargets): fc.Arbitrary<[string, string][]> {
  const authorization = fc.oneof(
    fc.constant(`Bearer ${t.key}`),
    fc.constant(`Bearer ${t.key}`),
    fc.constant(`Bearer ${t.revokedKey}`),
    fc.constant(`Bearer ${t.key.slice(0, -4)}AAAA`),
    fc.constant(`Basic ${Buffer.from('a:b').toString('base64')}`),
    fc.constant('Bearer '),
    fc.constant(`Bearer ${'k'.repeat(16_000)}`),
    fc.stringMatching(/^[\x21-\x7e ]{0,80}$/).map((s) => `Bearer ${s}`),
  );
  const contentType = fc.constantFrom(
    'application/json',
    'application/json',
    'application/json; charset=utf-8',
    'application/json; charset=latin1',
    'text/plain',
    'application/x-www-form-urlencoded',
    'multipart/form-data; boundary=x',
    'application/problem+json',
    '',
    'application/json, text/plain',
  );
  const extra = fc.array(fc.tuple(fc.stringMatching(/^[A-Za-z][A-Za-z0-9-]{0,30}$/), fc.stringMatching(/^[\x20-\x7e]{0,200}$/)), { maxLength: 6 });
  return fc
    .record({
      authorization: fc.option(authorization, { freq: 8 }),
      contentType: fc.option(contentType, { freq: 8 }),
      idempotencyKey: fc.option(fc.oneof(fc.stringMatching(/^[\x21-\x7e]{1,64}$/), fc.constant('x'.repeat(5000))), { freq: 3 }),
      extra,
    })
    .map(({ authorization, contentType, idempotencyKey, extra }) => {
      const out: [string, string][] = [];
      if (authorization !== null) out.push(['authorization', authorization]);
      if (contentType !== null) out.push(['content-type', contentType]);
      if (idempotencyKey !== null) out.push(['idempotency-key', idempotencyKey]);
      return [...out, ...extra.filter(([name]) => !/^(host|connection|content-length|transfer-encoding)$/i.test(name))];
    });
}

export function requests(t: FuzzTargets): fc.Arbitrary<RawRequest> {
  return fc.record({
    method: fc.constantFrom('GET', 'POST', 'POST', 'POST', 'PUT', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS', 'BREW'),
    path: paths(t),
    headers: headers(t),
    body,
    transport: fc.constantFrom('normal', 'normal', 'normal', 'normal', 'normal', 'normal', 'truncated', 'aborted'),
  });
}

export const MAX_ERROR_BYTES = 64 * 1024;

/** The properties of one answer; returns what is wrong with it, or undefined. */
export function checkAnswer(request: RawRequest, response: RawResponse | undefined, t: FuzzTargets): string | undefined {
  if (!response) return request.transport === 'normal' ? 'no answer to a complete request' : undefined;
  if (response.status >= 500) return `status ${response.status}`;
  const text = response.body.toString('utf8');
  const mentioned = request.path.includes(t.otherTenantId) || request.body.includes(t.otherTenantId);
  if (text.includes(t.otherTenantMarker)) return "another tenant's text in the answer";
  if (text.includes(t.otherTenantId) && !mentioned) return "another tenant's evaluation id in the answer";
  if (response.status < 300 && request.path.includes(t.otherTenantId)) return `another tenant's evaluation answered with ${response.status}`;
  if (response.status >= 400) {
    if (response.body.length > MAX_ERROR_BYTES) return `an error of ${response.body.length} bytes`;
    if (request.method === 'HEAD') return undefined;
    if (!(response.headers['content-type'] ?? '').startsWith('application/problem+json'))
      return `a ${response.status} that is not problem+json (${response.headers['content-type'] ?? 'no content-type'})`;
    try {
      const problem = JSON.parse(text) as { type?: unknown; title?: unknown; status?: unknown };
      if (typeof problem.title !== 'string' || problem.status !== response.status) return 'a problem+json without title or with the wrong status';
    } catch {
      return 'a problem+json body that does not parse';
    }
  }
  return undefined;
}

/** A short description of a failing case (a counterexample can hold megabytes). */
export function describeCase(request: RawRequest): string {
  const clip = (s: string) => (s.length > 120 ? `${s.slice(0, 120)}… (${s.length} chars)` : s);
  return JSON.stringify({
    method: request.method,
    path: clip(request.path),
    headers: request.headers.map(([n, v]) => [n, clip(v)]),
    transport: request.transport,
    bodyBytes: request.body.length,
    bodyStart: clip(request.body.subarray(0, 300).toString('latin1')),
  });
}
