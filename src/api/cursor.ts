// The list cursor as clients see it: a position in (xid, id) order, base64url-encoded.
import { UUID } from './queries.js';

export function encodeCursor(position: { xid: string; id: string }): string {
  return Buffer.from(JSON.stringify([position.xid, position.id])).toString('base64url');
}

export function decodeCursor(cursor: string): { xid: string; id: string } | undefined {
  try {
    const [xid, id] = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as unknown[];
    if (typeof xid === 'string' && /^\d{1,20}$/.test(xid) && typeof id === 'string' && UUID.test(id)) return { xid, id };
  } catch {
    // fall through: not a cursor we issued
  }
  return undefined;
}
