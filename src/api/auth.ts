// Bearer API keys. A key belongs to one application. Lookups are cached briefly in-process so a
// request does not pay a database round trip for its key; a revoked key therefore stops working
// within the cache TTL (default 10 s), which docs/api.md states.
//
// The cache faces untrusted input: a token that is not shaped like a key is refused before any
// lookup; entries are keyed by the key's sha256 (the token itself is never held); known and
// unknown keys live in separate caches, each bounded by bytes, so a flood of made-up keys can
// neither grow the process nor push out the keys of real clients.
import type { Db } from '../db/index.js';
import { applicationForKeyHash, hashApiKey, isWellFormedApiKey } from '../keys.js';

export interface KeyResolver {
  resolve(key: string): Promise<string | undefined>;
  /** Bytes the cache accounts for (both caches). */
  sizeBytes(): number;
}

/** What one entry costs besides its application id: the 64-character hash, the entry and Map slot. */
const ENTRY_OVERHEAD_BYTES = 200;
/** Share of the byte budget that unknown keys may use. */
const UNKNOWN_SHARE = 0.25;

class ByteBoundedCache {
  private readonly entries = new Map<string, { applicationId: string | undefined; expiresAt: number; bytes: number }>();
  private bytes = 0;

  constructor(private readonly maxBytes: number) {}

  get(hash: string, now: number): { applicationId: string | undefined } | undefined {
    const hit = this.entries.get(hash);
    if (!hit) return undefined;
    if (hit.expiresAt <= now) {
      this.delete(hash);
      return undefined;
    }
    return hit;
  }

  set(hash: string, applicationId: string | undefined, expiresAt: number): void {
    this.delete(hash);
    const bytes = ENTRY_OVERHEAD_BYTES + 2 * (applicationId?.length ?? 0);
    if (bytes > this.maxBytes) return;
    // Map keeps insertion order: the first entry is the oldest, evicted first.
    while (this.bytes + bytes > this.maxBytes) this.delete(this.entries.keys().next().value as string);
    this.entries.set(hash, { applicationId, expiresAt, bytes });
    this.bytes += bytes;
  }

  size(): number {
    return this.bytes;
  }

  private delete(hash: string): void {
    const entry = this.entries.get(hash);
    if (!entry) return;
    this.entries.delete(hash);
    this.bytes -= entry.bytes;
  }
}

export function createKeyResolver(db: Db, options: { ttlMs?: number; maxBytes?: number; now?: () => number } = {}): KeyResolver {
  const ttlMs = options.ttlMs ?? 10_000;
  const maxBytes = options.maxBytes ?? 4 * 1024 * 1024;
  const now = options.now ?? Date.now;
  const known = new ByteBoundedCache(Math.floor(maxBytes * (1 - UNKNOWN_SHARE)));
  const unknown = new ByteBoundedCache(Math.floor(maxBytes * UNKNOWN_SHARE));
  return {
    async resolve(key) {
      if (!isWellFormedApiKey(key)) return undefined;
      const hash = hashApiKey(key);
      const hex = hash.toString('hex');
      const hit = known.get(hex, now()) ?? unknown.get(hex, now());
      if (hit) return hit.applicationId;
      const applicationId = await applicationForKeyHash(db, hash);
      if (ttlMs > 0) (applicationId ? known : unknown).set(hex, applicationId, now() + ttlMs);
      return applicationId;
    },
    sizeBytes: () => known.size() + unknown.size(),
  };
}

export function bearerToken(header: string | undefined): string | undefined {
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '');
  return match?.[1];
}
