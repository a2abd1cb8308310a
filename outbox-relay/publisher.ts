// Turns outbox rows into Kafka messages and reports each row's outcome. librdkafka batches them on
// the wire and each row gets its own delivery report; rows Kafka would refuse on their own are
// refused here without a send.
import { cloudEventHeaders } from '../src/cloudevents.js';
import type { EvalboxError } from '../src/errors.js';
import { kafkaRecordBytes, unpublishableReason } from '../src/events.js';
import type { DeliveryOutcome, OutgoingMessage } from '../src/kafka.js';
import { linksTo, tracingStarted, type Link } from '../src/tracing.js';
import type { OutboxRow } from './sql.js';

/** A row's fate in one attempt: acknowledged, or failed before (sent: false) or after it was sent. */
export type RowOutcome = { ok: true } | { ok: false; sent: boolean; error: EvalboxError };

export function toKafkaMessage(row: OutboxRow): OutgoingMessage {
  return {
    topic: row.topic,
    key: row.key,
    value: Buffer.from(row.payload),
    headers: cloudEventHeaders({ id: row.id, type: row.type, source: row.source, time: row.created_at.toISOString() }, row.headers),
  };
}

/** Links from a batch's span to the trace of each row (none while tracing is off: no parsing). */
export const publishLinks = (rows: OutboxRow[]): Link[] => (tracingStarted() ? linksTo(rows.map((row) => row.headers.traceparent)) : []);

/** Checks what Kafka would refuse for this row alone, before sending it (the insert-time rule). */
export function precheck(row: OutboxRow, message: OutgoingMessage = toKafkaMessage(row)): EvalboxError | undefined {
  return unpublishableReason(
    row.topic,
    kafkaRecordBytes(row.key, typeof message.value === 'string' ? Buffer.byteLength(message.value) : message.value.length, message.headers),
    'ERR_MSG_SIZE_TOO_LARGE',
  );
}

/** Produces the rows that are not `skip`ped and returns one outcome per row (skipped rows: undefined). */
export async function publishRows(
  produceBatch: (messages: OutgoingMessage[]) => Promise<DeliveryOutcome[]>,
  rows: OutboxRow[],
  skip: (row: OutboxRow) => boolean,
): Promise<(RowOutcome | undefined)[]> {
  const messages = rows.map((row) => (skip(row) ? undefined : toKafkaMessage(row)));
  const outcomes: (RowOutcome | undefined)[] = rows.map((row, i) => {
    const message = messages[i];
    if (!message) return undefined;
    const rejected = precheck(row, message);
    return rejected ? { ok: false, sent: false, error: rejected } : undefined;
  });
  const sendable = messages.filter((message, i): message is OutgoingMessage => message !== undefined && outcomes[i] === undefined);
  const delivered = sendable.length ? await produceBatch(sendable) : [];
  let next = 0;
  return rows.map((row, i) => {
    const outcome = outcomes[i];
    if (outcome || skip(row)) return outcome;
    const delivery = delivered[next++] as DeliveryOutcome;
    if (delivery === 'acknowledged') return { ok: true };
    return 'notProduced' in delivery ? { ok: false, sent: false, error: delivery.notProduced } : { ok: false, sent: true, error: delivery };
  });
}
