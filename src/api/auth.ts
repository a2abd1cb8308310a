// Bearer API keys. A key belongs to one application. Lookups are cached briefly in-process so a
// request does not pay a database round trip for its key; a revoked key therefore stops working
// within the cache TTL (default 10 s), which docs/api.md states.
import type { Db } from '../db/index.js';
import { applicationForKey } from '../keys.js';

export interface KeyResolver {
  resolve(key: string): Promise<string | undefined>;
}

export function createKeyResolver(db: Db, options: { ttlMs?: number; maxEntries?: number; now?: () => number } = {}): KeyResolver {
  const ttlMs = options.ttlMs ?? 10_000;
  const maxEntries = options.maxEntries ?? 10_000;
  const now = options.now ?? Date.now;
  // Map keeps insertion order: the first entry is the oldest, evicted when full.
  const cache = new Map<string, { applicationId: string | undefined; expiresAt: number }>();
  return {
    async resolve(key) {
      const hit = cache.get(key);
      if (hit && hit.expiresAt > now()) return hit.applicationId;
      const applicationId = await applicationForKey(db, key);
      cache.delete(key);
      if (cache.size >= maxEntries) cache.delete(cache.keys().next().value as string);
      // Unknown keys are cached too, so a flood of bad keys cannot hammer the database.
      cache.set(key, { applicationId, expiresAt: now() + ttlMs });
      return applicationId;
    },
  };
}

export function bearerToken(header: string | undefined): string | undefined {
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '');
  return match?.[1];
}
