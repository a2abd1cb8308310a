// Outbox events: the only way anything in evalbox publishes to Kafka. A writer inserts the event
// in the same transaction as the state change it announces; the relay publishes it later.
// Events follow CloudEvents 1.0 (Kafka binding, binary mode): the payload becomes the Kafka value,
// the id becomes ce_id.
import { sql, type Transaction } from 'kysely';
import { PermanentError } from './errors.js';
import { uuidv7 } from './ids.js';
import type { Database } from './db/index.js';

export const EVENT_TYPES = {
  evaluationCreated: 'evaluation.created',
  evaluationScored: 'evaluation.scored',
} as const;

/** Kafka's default message.max.bytes is 1 MB; an event that cannot be published is refused at insert. */
export const MAX_EVENT_BYTES = 1_000_000;
const LEGAL_TOPIC = /^[a-zA-Z0-9._-]{1,249}$/;

export interface OutboxEvent {
  topic: string;
  key: string;
  type: string;
  source: string;
  data: unknown;
  /** Extra Kafka headers, e.g. a W3C traceparent. */
  headers?: Record<string, string>;
  /** Defaults to a new uuid v7. */
  id?: string;
}

export class EventTooLargeError extends PermanentError {
  constructor(bytes: number) {
    super(`event of ${bytes} bytes exceeds the ${MAX_EVENT_BYTES}-byte limit`, { code: 'EVENT_TOO_LARGE' });
  }
}

/** Validates and serialises an event's payload; throws a PermanentError for what Kafka would refuse. */
export function encodeEventPayload(event: OutboxEvent): string {
  if (!LEGAL_TOPIC.test(event.topic)) throw new PermanentError(`illegal topic name "${event.topic}"`, { code: 'INVALID_TOPIC' });
  const payload = JSON.stringify(event.data);
  const bytes = Buffer.byteLength(payload);
  if (bytes > MAX_EVENT_BYTES) throw new EventTooLargeError(bytes);
  return payload;
}

/** Inserts events into the outbox inside the caller's transaction. Returns their ids. */
export async function insertOutboxEvents(trx: Transaction<Database>, events: OutboxEvent[]): Promise<string[]> {
  if (events.length === 0) return [];
  const rows = events.map((event) => ({
    id: event.id ?? uuidv7(),
    shard: sql<number>`outbox_shard_of(${event.key})`,
    topic: event.topic,
    key: event.key,
    type: event.type,
    source: event.source,
    headers: JSON.stringify(event.headers ?? {}),
    payload: encodeEventPayload(event),
  }));
  await trx.insertInto('outbox').values(rows).execute();
  return rows.map((r) => r.id);
}
