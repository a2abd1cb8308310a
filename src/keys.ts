// API keys: one application each. Only a sha256 of the key is stored; the key is shown once.
import { hash, randomBytes } from 'node:crypto';
import { uuidv7 } from './ids.js';
import type { Db } from './db/index.js';

const KEY_PREFIX = 'ebx_';
/** What createApiKey makes: the prefix and 24 random bytes in base64url (32 characters). */
const KEY_FORMAT = /^ebx_[A-Za-z0-9_-]{32}$/;

/** Whether a token has the shape of an evalbox key; anything else is refused without a lookup. */
export const isWellFormedApiKey = (token: string): boolean => token.length === 36 && KEY_FORMAT.test(token);

// crypto.hash is one call into OpenSSL, without a Hash object per request.
export const hashApiKey = (key: string): Buffer => hash('sha256', key, 'buffer');

export interface CreatedApiKey {
  id: string;
  applicationId: string;
  key: string;
  prefix: string;
}

export async function createApiKey(db: Db, applicationId: string): Promise<CreatedApiKey> {
  const key = `${KEY_PREFIX}${randomBytes(24).toString('base64url')}`;
  const id = uuidv7();
  const prefix = key.slice(0, 12);
  await db
    .insertInto('api_keys')
    .values({ id, application_id: applicationId, key_hash: hashApiKey(key), prefix })
    .execute();
  return { id, applicationId, key, prefix };
}

export async function listApiKeys(db: Db, applicationId?: string) {
  let query = db.selectFrom('api_keys').select(['id', 'application_id', 'prefix', 'created_at', 'revoked_at']).orderBy('created_at');
  if (applicationId) query = query.where('application_id', '=', applicationId);
  return query.execute();
}

/** Revokes by id or by the printed prefix; returns how many keys it revoked. */
export async function revokeApiKey(db: Db, idOrPrefix: string): Promise<number> {
  const isUuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(idOrPrefix);
  const result = await db
    .updateTable('api_keys')
    .set({ revoked_at: new Date() })
    .where(isUuid ? 'id' : 'prefix', '=', idOrPrefix)
    .where('revoked_at', 'is', null)
    .executeTakeFirst();
  return Number(result.numUpdatedRows);
}

/** The application a live key belongs to, or undefined. */
export async function applicationForKey(db: Db, key: string): Promise<string | undefined> {
  if (!isWellFormedApiKey(key)) return undefined;
  return applicationForKeyHash(db, hashApiKey(key));
}

/** The application of the live key with this sha256. Index: the unique index on api_keys (key_hash). */
export async function applicationForKeyHash(db: Db, keyHash: Buffer): Promise<string | undefined> {
  const row = await db.selectFrom('api_keys').select('application_id').where('key_hash', '=', keyHash).where('revoked_at', 'is', null).executeTakeFirst();
  return row?.application_id;
}
