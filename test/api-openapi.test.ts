// The contract: the OpenAPI document passes a well-kept linter (Spectral's OpenAPI ruleset, run
// offline), and the response checker every API test uses can fail.
import { describe, expect, it } from '@jest/globals';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { buildOpenApiDocument } from '../src/api/openapi.js';
import { assertDocumented, ContractViolation } from './api-contract.js';

const run = promisify(execFile);

describe('OpenAPI contract', () => {
  it('the OpenAPI document passes the Spectral OpenAPI ruleset with no error and no warning', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'evalbox-openapi-'));
    try {
      const file = path.join(dir, 'openapi.json');
      await writeFile(file, JSON.stringify(buildOpenApiDocument('1'), null, 2));
      const result = await run('node_modules/.bin/spectral', ['lint', file, '--ruleset', '.spectral.yaml', '--fail-severity', 'warn', '--format', 'text'], {
        env: { ...process.env, NO_COLOR: '1' },
      }).catch((error: { stdout?: string; stderr?: string; code?: number }) => error);
      const output = `${result.stdout ?? ''}${result.stderr ?? ''}`;
      expect({ code: (result as { code?: number }).code ?? 0, output }).toEqual({ code: 0, output: expect.stringContaining('No results with a severity of') });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 120_000);

  it('the response checker rejects what the document does not promise', async () => {
    const problem = (status: number, headers: Record<string, string> = {}) =>
      new Response(JSON.stringify({ type: 'about:blank', title: 'x', status }), {
        status,
        headers: { 'content-type': 'application/problem+json', 'x-request-id': 'r1', ...headers },
      });
    await expect(assertDocumented('POST', '/v1/evaluations', problem(418))).rejects.toThrow(ContractViolation);
    await expect(assertDocumented('POST', '/v1/evaluations', problem(429))).rejects.toThrow(/Retry-After/);
    await expect(
      assertDocumented('GET', '/v1/evaluations/x', new Response('{}', { status: 200, headers: { 'content-type': 'application/json', 'x-request-id': 'r' } })),
    ).rejects.toThrow(/schema/);
    await expect(
      assertDocumented('GET', '/v1/dimensions', new Response('{"defaults":[],"items":[]}', { headers: { 'content-type': 'application/json' } })),
    ).rejects.toThrow(/X-Request-Id/);
    await expect(assertDocumented('POST', '/v1/evaluations', problem(429, { 'retry-after': '1' }))).resolves.toBeUndefined();
  });
});
