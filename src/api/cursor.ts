// The list cursor as clients see it: an opaque token. The position it holds, (xid, id), is
// sealed with AES-256-GCM, so it neither exposes the cluster-wide transaction id nor can be
// forged or edited, and the application id is bound in as associated data: a cursor works only
// for the application it was issued to. The key comes from EVALBOX_API_CURSOR_SECRET (every
// replica must share it), else from the database URL, which every replica of one cluster shares.
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { UUID } from './queries.js';

export interface Position {
  xid: string;
  id: string;
  /**
   * Which order the position is in: evaluations in the order they were created (the default), or
   * results in the order they were scored (scoredSince, the results stream). A cursor of one
   * order is refused where the other is expected.
   */
  order?: 'scored';
}

export interface CursorCodec {
  encode(position: Position, applicationId: string): string;
  /** The position, or undefined for anything this codec did not issue to this application. */
  decode(cursor: string, applicationId: string): Position | undefined;
}

export function createCursorCodec(secret: string): CursorCodec {
  const key = createHash('sha256').update('evalbox list cursor\0').update(secret).digest();
  return {
    encode(position, applicationId) {
      const iv = randomBytes(12);
      const cipher = createCipheriv('aes-256-gcm', key, iv);
      cipher.setAAD(Buffer.from(applicationId));
      const sealed = Buffer.concat([
        cipher.update(JSON.stringify(position.order ? [position.xid, position.id, position.order] : [position.xid, position.id])),
        cipher.final(),
      ]);
      return Buffer.concat([iv, sealed, cipher.getAuthTag()]).toString('base64url');
    },
    decode(cursor, applicationId) {
      if (cursor.length > 200) return undefined;
      const bytes = Buffer.from(cursor, 'base64url');
      if (bytes.length < 12 + 16 + 2) return undefined;
      try {
        const decipher = createDecipheriv('aes-256-gcm', key, bytes.subarray(0, 12));
        decipher.setAAD(Buffer.from(applicationId));
        decipher.setAuthTag(bytes.subarray(bytes.length - 16));
        const plain = Buffer.concat([decipher.update(bytes.subarray(12, bytes.length - 16)), decipher.final()]).toString('utf8');
        const [xid, id, order] = JSON.parse(plain) as unknown[];
        if (typeof xid === 'string' && /^\d{1,20}$/.test(xid) && typeof id === 'string' && UUID.test(id)) {
          if (order === undefined) return { xid, id };
          if (order === 'scored') return { xid, id, order };
        }
      } catch {
        // fall through: not a cursor we issued (or not to this application)
      }
      return undefined;
    },
  };
}
