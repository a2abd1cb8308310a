// Who is looking: an operator (the console token, or anyone when the console is bound to loopback
// without a token) sees everything; an application API key sees only its own application's
// evaluations, found by the same hash lookup as the REST API (src/keys.ts). The token or key
// arrives as a Bearer header or in the HttpOnly cookie the sign-in form sets.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { Db } from '../db/index.js';
import { applicationForKey } from '../keys.js';

export type Viewer = { kind: 'operator' } | { kind: 'application'; applicationId: string };

export const SESSION_COOKIE = 'evalbox_console';

export interface AccessPolicy {
  /** EVALBOX_CONSOLE_TOKEN; undefined only when the console is bound to loopback. */
  operatorToken: string | undefined;
}

const digest = (text: string): Buffer => createHash('sha256').update(text).digest();

/** Constant-time comparison (of digests, so lengths do not leak either). */
export function sameSecret(given: string, expected: string): boolean {
  return timingSafeEqual(digest(given), digest(expected));
}

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host === '[::1]' || /^127(\.\d{1,3}){3}$/.test(host);
}

/**
 * The viewer a credential stands for, or undefined. Without any credential the console is open to
 * operators only when no token is configured (it then listens on loopback alone).
 */
export async function resolveViewer(db: Db, policy: AccessPolicy, credential: string | undefined): Promise<Viewer | undefined> {
  if (!credential) return policy.operatorToken === undefined ? { kind: 'operator' } : undefined;
  if (policy.operatorToken !== undefined && sameSecret(credential, policy.operatorToken)) return { kind: 'operator' };
  const applicationId = await applicationForKey(db, credential);
  return applicationId === undefined ? undefined : { kind: 'application', applicationId };
}
