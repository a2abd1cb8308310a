// The API's problem mapping (src/api/error-mapping.ts), without a database: every error code maps
// to a status and a problem type, retryable codes to an answer that says "retry", and a client
// that aborts its upload is never reported as a database outage.
import { describe, expect, it } from '@jest/globals';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { problemForCode, toProblem } from '../../src/api/error-mapping.js';
import { ClientAbortedError } from '../../src/api/node-request.js';
import { ProblemError } from '../../src/api/problem.js';
import { ERROR_CODES, PermanentError, RetryableError, ValidationError, type PermanentCode, type RetryableCode } from '../../src/errors.js';

/** A logger whose lines the test reads back. */
function capturingLogger() {
  const lines: { level: number; msg: string }[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(JSON.parse(chunk.toString()) as { level: number; msg: string });
      done();
    },
  });
  return { logger: pino({ level: 'debug' }, sink), lines };
}

const KNOWN_STATUSES = [400, 401, 404, 405, 409, 413, 415, 422, 429, 499, 500, 503];

/** An error carrying the code, of the class the table says it belongs to. */
function errorWith(code: string, retryable: boolean): Error {
  return retryable
    ? new RetryableError(`failed: ${code}`, { code: code as RetryableCode })
    : new PermanentError(`failed: ${code}`, { code: code as PermanentCode });
}

describe('API problem mapping', () => {
  it('every error code maps to a status and a problem type, and toProblem answers it', () => {
    const { logger } = capturingLogger();
    for (const [code, spec] of Object.entries(ERROR_CODES)) {
      const mapped = problemForCode(code as keyof typeof ERROR_CODES, spec.retryable);
      const problem = toProblem(errorWith(code, spec.retryable), '/v1/evaluations', logger);
      expect({ code, status: problem.problem.status, type: problem.problem.type }).toEqual({ code, status: mapped.status, type: mapped.type });
      expect(KNOWN_STATUSES).toContain(mapped.status);
      expect(problem.problem.title).not.toBe('Error');
      expect(mapped.type === 'about:blank' || /^https:\/\/evalbox\.dev\/problems\/[a-z-]+$/.test(mapped.type)).toBe(true);
      // A retryable code tells the client to retry, and when.
      if (spec.retryable) {
        expect([409, 503]).toContain(mapped.status);
        expect(problem.headers['retry-after']).toBe('1');
      } else {
        expect({ code, status: mapped.status }).not.toEqual({ code, status: 503 });
      }
    }
  });

  it('what the input causes is a 4xx, what the server causes a 5xx: validation 400, an event too large 413, a value Postgres refuses 400, a concurrent idempotency key 409', () => {
    const { logger } = capturingLogger();
    expect(toProblem(new PermanentError('bad', { code: 'VALIDATION_FAILED' }), 'r', logger).problem.status).toBe(400);
    expect(toProblem(new ValidationError('bad', [{ pointer: '/prompt', detail: 'x' }]), 'r', logger).problem).toMatchObject({
      status: 400,
      errors: [{ pointer: '/prompt' }],
    });
    expect(toProblem(new PermanentError('too big', { code: 'EVENT_TOO_LARGE' }), 'r', logger).problem.status).toBe(413);
    // node-postgres errors carry the SQLSTATE as `code`.
    const nul = Object.assign(new Error('invalid byte sequence for encoding "UTF8": 0x00'), { code: '22021' });
    expect(toProblem(nul, 'r', logger).problem).toMatchObject({ status: 400, errors: [{ detail: 'refused by the database (SQLSTATE 22021)' }] });
    const tooDeep = Object.assign(new Error('stack depth limit exceeded'), { code: '54001' });
    expect(toProblem(tooDeep, 'r', logger).problem.status).toBe(400);
    const keyInUse = toProblem(new RetryableError('the idempotency key is in use by a concurrent request', { code: 'IDEMPOTENCY_CONFLICT' }), 'r', logger);
    expect({ status: keyInUse.problem.status, type: keyInUse.problem.type, retryAfter: keyInUse.headers['retry-after'] }).toEqual({
      status: 409,
      type: 'https://evalbox.dev/problems/idempotency-key-in-use',
      retryAfter: '1',
    });
    expect(toProblem(new Error('a bug'), 'r', logger).problem.status).toBe(500);
    expect(toProblem(new ProblemError(404, 'no such evaluation'), 'r', logger).problem.status).toBe(404);
  });

  it('client abort vs database outage: an aborted upload is a 499 logged at debug; a database outage is a 503 with Retry-After and a warning', () => {
    const { logger, lines } = capturingLogger();
    // The socket error a client's abort produces, wrapped as the body reader wraps it.
    const aborted = toProblem(new ClientAbortedError(Object.assign(new Error('aborted'), { code: 'ECONNRESET' })), '/v1/evaluations', logger);
    expect(aborted.problem.status).toBe(499);
    expect(aborted.headers['retry-after']).toBeUndefined();
    expect(lines.map((l) => [l.level, l.msg])).toEqual([[20, 'client closed the connection mid-request']]);

    lines.length = 0;
    for (const outage of [
      Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' }),
      Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01' }),
      Object.assign(new Error('canceling statement due to statement timeout'), { code: '57014' }),
      new Error('Connection terminated unexpectedly'),
    ]) {
      const problem = toProblem(outage, '/v1/evaluations', logger);
      expect([outage.message, problem.problem.status, problem.headers['retry-after']]).toEqual([outage.message, 503, '1']);
    }
    expect(lines.map((l) => [l.level, l.msg])).toEqual(Array.from({ length: 4 }, () => [40, 'database unavailable']));
  });
});
