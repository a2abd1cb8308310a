// The error-code table (src/errors.ts): what each code means for retrying, provider pressure and
// the judge's breaker and limiter, and the classification of Postgres errors by SQLSTATE.
import { describe, expect, it } from '@jest/globals';
import { reportFor } from '../../consumers/judge/client.js';
import {
  classifyPgError,
  ERROR_CODES,
  isProviderPressure,
  isRetryable,
  parseErrorCode,
  parsePermanentCode,
  PermanentError,
  RetryableError,
  specOf,
} from '../../src/errors.js';

describe('error codes', () => {
  it('guarantee 6: rate limits, holds, an open circuit, a queue timeout and a busy claim are provider pressure; failures of one call are not', () => {
    const pressure = Object.keys(ERROR_CODES).filter((code) => specOf(code)?.providerPressure);
    expect(pressure.sort()).toEqual(['JUDGE_CIRCUIT_OPEN', 'JUDGE_CLAIM_BUSY', 'JUDGE_QUEUE_TIMEOUT', 'JUDGE_RATE_LIMITED', 'JUDGE_THROTTLED']);
    expect(isProviderPressure(new RetryableError('429', { code: 'JUDGE_RATE_LIMITED', retryAfterMs: 1000 }))).toBe(true);
    expect(isProviderPressure(new RetryableError('503', { code: 'JUDGE_SERVER_ERROR' }))).toBe(false);
    expect(isProviderPressure(new Error('JUDGE_RATE_LIMITED'))).toBe(false);
  });

  it('every provider-pressure code is retryable', () => {
    for (const [code, spec] of Object.entries(ERROR_CODES)) if ('providerPressure' in spec) expect([code, spec.retryable]).toEqual([code, true]);
  });

  it('a judge call that ends in a 429 shrinks the limiter and leaves the breaker alone; a 5xx counts against the breaker; a 4xx shows the provider is up', () => {
    expect(reportFor(new RetryableError('429', { code: 'JUDGE_RATE_LIMITED', retryAfterMs: 2000 }))).toEqual({
      health: 'ignore',
      permit: 'rate_limited',
      retryAfterMs: 2000,
      retryClass: 'rate_limited',
    });
    expect(reportFor(new RetryableError('500', { code: 'JUDGE_SERVER_ERROR' }))).toEqual({ health: 'failure', permit: 'ignore', retryClass: 'server_error' });
    expect(reportFor(new PermanentError('401', { code: 'JUDGE_AUTH' }))).toEqual({ health: 'success', permit: 'ignore' });
    expect(reportFor(new Error('anything else'))).toEqual({ health: 'ignore', permit: 'ignore' });
  });

  it('codes read back from storage: known ones and Postgres/librdkafka codes parse, anything else does not', () => {
    expect(parseErrorCode('JUDGE_UNPARSEABLE')).toBe('JUDGE_UNPARSEABLE');
    expect(parseErrorCode('PG_23505')).toBe('PG_23505');
    expect(parseErrorCode('ERR_MSG_SIZE_TOO_LARGE')).toBe('ERR_MSG_SIZE_TOO_LARGE');
    expect(parseErrorCode('toString')).toBeUndefined();
    expect(parseErrorCode('SOMETHING_NEW')).toBeUndefined();
    expect(parsePermanentCode('JUDGE_REFUSED')).toBe('JUDGE_REFUSED');
    expect(parsePermanentCode('JUDGE_RATE_LIMITED')).toBeUndefined();
  });

  it('Postgres errors are classified by SQLSTATE, never by message text', () => {
    const pg = (code: string | undefined, message = 'boom') => Object.assign(new Error(message), code ? { code } : {});
    expect(classifyPgError(pg('40001')).retryable).toBe(true);
    expect(classifyPgError(pg('08006')).retryable).toBe(true);
    expect(classifyPgError(pg('57P01')).retryable).toBe(true);
    expect(classifyPgError(pg('ECONNREFUSED')).code).toBe('PG_ECONNREFUSED');
    expect(classifyPgError(pg('23505', 'connection refused')).retryable).toBe(false);
    expect(classifyPgError(pg(undefined, 'Connection terminated unexpectedly'))).toMatchObject({ retryable: true, code: 'PG_CONNECTION' });
    expect(classifyPgError(pg('25P03', 'terminating connection due to idle-in-transaction timeout')).retryable).toBe(true);
    expect(classifyPgError(pg(undefined, 'Client has encountered a connection error and is not queryable'))).toMatchObject({
      retryable: true,
      code: 'PG_CONNECTION',
    });
    // A client we closed ourselves is a programming error, never retried.
    expect(classifyPgError(pg(undefined, 'Client was closed and is not queryable')).retryable).toBe(false);
    expect(isRetryable(new Error('wrapper', { cause: classifyPgError(pg('40P01')) }))).toBe(true);
  });
});
