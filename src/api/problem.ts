// RFC 9457 problem details: every error the API returns is thrown as a ProblemError (a hono
// HTTPException) from a handler or middleware and rendered in one place, app.onError.
import { HTTPException } from 'hono/http-exception';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import type { FieldError } from '../errors.js';

export interface Problem {
  type: string;
  title: string;
  status: number;
  detail?: string;
  instance?: string;
  errors?: FieldError[];
  /** Present (true) when more fields failed than `errors` lists. */
  errorsTruncated?: boolean;
}

const TITLES: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  404: 'Not Found',
  405: 'Method Not Allowed',
  409: 'Conflict',
  413: 'Content Too Large',
  415: 'Unsupported Media Type',
  422: 'Unprocessable Content',
  429: 'Too Many Requests',
  499: 'Client Closed Request',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

export class ProblemError extends HTTPException {
  readonly problem: Problem;
  readonly headers: Record<string, string>;

  constructor(
    status: number,
    detail: string,
    extra: { errors?: FieldError[]; errorsTruncated?: boolean; type?: string; headers?: Record<string, string>; cause?: unknown } = {},
  ) {
    super(status as ContentfulStatusCode, { message: detail, cause: extra.cause });
    this.problem = {
      type: extra.type ?? 'about:blank',
      title: TITLES[status] ?? 'Error',
      status,
      detail,
      ...(extra.errors ? { errors: extra.errors } : {}),
      ...(extra.errorsTruncated ? { errorsTruncated: true } : {}),
    };
    this.headers = extra.headers ?? {};
  }

  /** A problem for any HTTPException hono's own middleware may throw. */
  static from(error: HTTPException): ProblemError {
    return error instanceof ProblemError ? error : new ProblemError(error.status, error.message || TITLES[error.status] || 'Error', { cause: error });
  }
}

export const PROBLEM_CONTENT_TYPE = 'application/problem+json';
