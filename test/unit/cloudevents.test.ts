// The relay builds these headers for every row it sends; the row's own headers (traceparent and
// anything a writer added) travel with them, but can never replace a CloudEvents attribute.
import { expect, test } from '@jest/globals';
import { cloudEventHeaders } from '../../src/cloudevents.js';

const attributes = { id: 'e1', type: 'evaluation.created', source: '/evalbox/api', time: '2026-12-01T00:00:00.000Z' };

test("a row's own headers come first and travel unchanged", () => {
  const headers = cloudEventHeaders(attributes, { traceparent: '00-abc-def-01', 'x-tenant': 't1' });
  expect(Object.keys(headers).slice(0, 2)).toEqual(['traceparent', 'x-tenant']);
  expect(headers).toMatchObject({ traceparent: '00-abc-def-01', 'x-tenant': 't1', ce_id: 'e1', ce_specversion: '1.0', 'content-type': 'application/json' });
});

test("a row's own header cannot replace a CloudEvents attribute", () => {
  const headers = cloudEventHeaders(attributes, { ce_id: 'forged', ce_type: 'forged', ce_specversion: '0.3', 'content-type': 'text/plain' });
  expect(headers).toMatchObject({ ce_id: 'e1', ce_type: 'evaluation.created', ce_specversion: '1.0', 'content-type': 'application/json' });
});

test('the extra headers object is not modified', () => {
  const extra = { traceparent: '00-abc-def-01' };
  cloudEventHeaders(attributes, extra);
  expect(extra).toEqual({ traceparent: '00-abc-def-01' });
});

test('a "__proto__" header parsed from JSON stays a plain header and sets no prototype', () => {
  const extra = JSON.parse('{"__proto__": {"x-evil": "1"}, "traceparent": "t"}') as Record<string, string>;
  const headers = cloudEventHeaders(attributes, extra);
  expect(Object.getPrototypeOf(headers)).toBe(Object.prototype);
  expect(Object.keys(headers).slice(0, 2)).toEqual(['__proto__', 'traceparent']);
  const inherited: string[] = [];
  for (const name in headers) if (!Object.prototype.hasOwnProperty.call(headers, name)) inherited.push(name);
  expect(inherited).toEqual([]);
});
