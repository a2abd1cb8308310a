// Publishes a batch of outbox rows with the idempotent producer and reports each row's outcome.
// librdkafka batches them on the wire, and each row gets its own delivery report, so one poison
// row does not fail its neighbours.
import { cloudEventHeaders } from '../src/cloudevents.js';
import type { EvalboxError } from '../src/errors.js';
import { kafkaRecordBytes, unpublishableReason } from '../src/events.js';
import type { BatchProducer, DeliveryOutcome, OutgoingMessage } from '../src/kafka.js';
import type { OutboxRow } from './reader.js';

export type RowOutcome = { ok: true; ackedAt: number } | { ok: false; error: EvalboxError };

export function toKafkaMessage(row: OutboxRow): OutgoingMessage {
  return {
    topic: row.topic,
    key: row.key,
    value: row.payload,
    headers: cloudEventHeaders({ id: row.id, type: row.type, source: row.source, time: row.created_at.toISOString() }, row.headers),
  };
}

/** Checks what Kafka would refuse for this row alone, before sending it (the insert-time rule). */
function precheck(row: OutboxRow, message: OutgoingMessage): EvalboxError | undefined {
  return unpublishableReason(row.topic, kafkaRecordBytes(row.key, Buffer.byteLength(row.payload), message.headers), 'ERR_MSG_SIZE_TOO_LARGE');
}

export async function publishRows(producer: BatchProducer, rows: OutboxRow[]): Promise<RowOutcome[]> {
  const messages = rows.map(toKafkaMessage);
  const outcomes: (RowOutcome | undefined)[] = rows.map((row, i) => {
    const rejected = precheck(row, messages[i] as OutgoingMessage);
    return rejected ? { ok: false, error: rejected } : undefined;
  });
  const delivered = await producer.produceBatch(messages.filter((_, i) => outcomes[i] === undefined));
  let next = 0;
  return outcomes.map((outcome) => {
    if (outcome) return outcome;
    const delivery = delivered[next++] as DeliveryOutcome;
    return typeof delivery === 'number' ? { ok: true, ackedAt: delivery } : { ok: false, error: delivery };
  });
}
