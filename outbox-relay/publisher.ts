// Publishes a batch of outbox rows with the idempotent producer and reports each row's outcome.
// librdkafka batches them on the wire, and each row gets its own delivery report, so one poison
// row does not fail its neighbours.
import { cloudEventHeaders } from '../src/cloudevents.js';
import { PermanentError, type EvalboxError } from '../src/errors.js';
import type { BatchProducer, DeliveryOutcome, OutgoingMessage } from '../src/kafka.js';
import type { OutboxRow } from './reader.js';

/** librdkafka's default message.max.bytes; larger rows are parked without a send. */
export const MAX_MESSAGE_BYTES = 1_000_000;
const LEGAL_TOPIC = /^[a-zA-Z0-9._-]{1,249}$/;

export type RowOutcome = { ok: true; ackedAt: number } | { ok: false; error: EvalboxError };

export function toKafkaMessage(row: OutboxRow): OutgoingMessage {
  return {
    topic: row.topic,
    key: row.key,
    value: row.payload,
    headers: cloudEventHeaders({ id: row.id, type: row.type, source: row.source, time: row.created_at.toISOString() }, row.headers),
  };
}

/** Checks what Kafka would refuse for this row alone, before sending it. */
function precheck(row: OutboxRow): EvalboxError | undefined {
  if (!LEGAL_TOPIC.test(row.topic)) return new PermanentError(`illegal topic name "${row.topic}"`, { code: 'INVALID_TOPIC' });
  const bytes = Buffer.byteLength(row.payload) + Buffer.byteLength(row.key) + JSON.stringify(row.headers).length + 256;
  if (bytes > MAX_MESSAGE_BYTES) return new PermanentError(`message of about ${bytes} bytes exceeds ${MAX_MESSAGE_BYTES}`, { code: 'ERR_MSG_SIZE_TOO_LARGE' });
  return undefined;
}

export async function publishRows(producer: BatchProducer, rows: OutboxRow[]): Promise<RowOutcome[]> {
  const outcomes: (RowOutcome | undefined)[] = rows.map((row) => {
    const rejected = precheck(row);
    return rejected ? { ok: false, error: rejected } : undefined;
  });
  const sendable = rows.filter((_, i) => outcomes[i] === undefined);
  const delivered = await producer.produceBatch(sendable.map(toKafkaMessage));
  let next = 0;
  return outcomes.map((outcome) => {
    if (outcome) return outcome;
    const delivery = delivered[next++] as DeliveryOutcome;
    return typeof delivery === 'number' ? { ok: true, ackedAt: delivery } : { ok: false, error: delivery };
  });
}
