// Turns outbox rows into Kafka messages and reports each row's outcome. librdkafka batches them on
// the wire and each row gets its own delivery report; rows Kafka would refuse on their own are
// refused here without a send.
import { cloudEventHeaders } from '../src/cloudevents.js';
import { PermanentError, type EvalboxError } from '../src/errors.js';
import type { DeliveryOutcome, OutgoingMessage } from '../src/kafka.js';
import type { OutboxRow } from './sql.js';

/** librdkafka's default message.max.bytes; larger rows are parked without a send. */
export const MAX_MESSAGE_BYTES = 1_000_000;
const LEGAL_TOPIC = /^[a-zA-Z0-9._-]{1,249}$/;

/** A row's fate in one attempt: acknowledged, or failed before (sent: false) or after it was sent. */
export type RowOutcome = { ok: true; ackedAt: number } | { ok: false; sent: boolean; error: EvalboxError };

export function toKafkaMessage(row: OutboxRow): OutgoingMessage {
  return {
    topic: row.topic,
    key: row.key,
    value: row.payload,
    headers: cloudEventHeaders({ id: row.id, type: row.type, source: row.source, time: row.created_at.toISOString() }, row.headers),
  };
}

/** Checks what Kafka would refuse for this row alone, before sending it. */
export function precheck(row: OutboxRow): EvalboxError | undefined {
  if (!LEGAL_TOPIC.test(row.topic)) return new PermanentError(`illegal topic name "${row.topic}"`, { code: 'INVALID_TOPIC' });
  const bytes = Buffer.byteLength(row.payload) + Buffer.byteLength(row.key) + JSON.stringify(row.headers).length + 256;
  if (bytes > MAX_MESSAGE_BYTES) return new PermanentError(`message of about ${bytes} bytes exceeds ${MAX_MESSAGE_BYTES}`, { code: 'ERR_MSG_SIZE_TOO_LARGE' });
  return undefined;
}

/** Produces the rows that are not `skip`ped and returns one outcome per row (skipped rows: undefined). */
export async function publishRows(
  produceBatch: (messages: OutgoingMessage[]) => Promise<DeliveryOutcome[]>,
  rows: OutboxRow[],
  skip: (row: OutboxRow) => boolean,
): Promise<(RowOutcome | undefined)[]> {
  const outcomes: (RowOutcome | undefined)[] = rows.map((row) => {
    if (skip(row)) return undefined;
    const rejected = precheck(row);
    return rejected ? { ok: false, sent: false, error: rejected } : undefined;
  });
  const sendable = rows.filter((row, i) => outcomes[i] === undefined && !skip(row));
  const delivered = sendable.length ? await produceBatch(sendable.map(toKafkaMessage)) : [];
  let next = 0;
  return rows.map((row, i) => {
    const outcome = outcomes[i];
    if (outcome || skip(row)) return outcome;
    const delivery = delivered[next++] as DeliveryOutcome;
    if (typeof delivery === 'number') return { ok: true, ackedAt: delivery };
    return 'notProduced' in delivery ? { ok: false, sent: false, error: delivery.notProduced } : { ok: false, sent: true, error: delivery };
  });
}
