// Outbox events: the only way anything in evalbox publishes to Kafka. A writer inserts the event
// in the same transaction as the state change it announces; the relay publishes it later.
// Events follow CloudEvents 1.0 (Kafka binding, binary mode): the payload becomes the Kafka value,
// the id becomes ce_id. This module owns the outbox row: its encoding, the checks that keep
// unpublishable rows out (topic name, size as the relay will send it), and the one INSERT.
import { CompiledQuery, type Transaction } from 'kysely';
import { cloudEventHeaders } from './cloudevents.js';
import { PermanentError, type PermanentCode } from './errors.js';
import { uuidv7 } from './ids.js';
import type { Database } from './db/index.js';

export const EVENT_TYPES = {
  evaluationCreated: 'evaluation.created',
  evaluationScored: 'evaluation.scored',
  evaluationClientScored: 'evaluation.client_scored',
  evaluationDeleted: 'evaluation.deleted',
} as const;

/** librdkafka's default message.max.bytes: a record (key, value, headers, framing) above it is refused. */
export const MAX_EVENT_BYTES = 1_000_000;
/** Record and header framing on top of the key, value and header bytes (an upper bound). */
const RECORD_OVERHEAD_BYTES = 256;
const HEADER_OVERHEAD_BYTES = 8;
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

/** An outbox row ready to insert: validated, payload serialised. */
export interface OutboxRowValues {
  id: string;
  topic: string;
  key: string;
  type: string;
  source: string;
  /** JSON text of the extra headers. */
  headers: string;
  /** JSON text of the data. */
  payload: string;
  createdAt: Date;
}

export class EventTooLargeError extends PermanentError {
  constructor(bytes: number, code: PermanentCode = 'EVENT_TOO_LARGE') {
    super(`event of ${bytes} bytes exceeds the ${MAX_EVENT_BYTES}-byte limit`, { code });
  }
}

/** Bytes of a Kafka record as counted against message.max.bytes: key, value, headers, framing. */
export function kafkaRecordBytes(key: string, valueBytes: number, headers: Record<string, string>): number {
  let bytes = RECORD_OVERHEAD_BYTES + Buffer.byteLength(key) + valueBytes;
  for (const name in headers) bytes += HEADER_OVERHEAD_BYTES + Buffer.byteLength(name) + Buffer.byteLength(headers[name] as string);
  return bytes;
}

/**
 * Why Kafka would refuse this record, or undefined. Used at insert time and by the relay before
 * it sends (which reports the size with librdkafka's own code, ERR_MSG_SIZE_TOO_LARGE).
 */
export function unpublishableReason(topic: string, recordBytes: number, tooLargeCode?: PermanentCode): PermanentError | undefined {
  if (!LEGAL_TOPIC.test(topic)) return new PermanentError(`illegal topic name "${topic}"`, { code: 'INVALID_TOPIC' });
  if (recordBytes > MAX_EVENT_BYTES) return new EventTooLargeError(recordBytes, tooLargeCode);
  return undefined;
}

/**
 * Validates an event and serialises it as an outbox row; throws a PermanentError for what Kafka
 * would refuse. The size is that of the record the relay will send: the relay's value is the
 * payload as Postgres renders the stored jsonb (", " and ": " separators, numbers without
 * exponents), which can be longer than the JSON text written, plus the key and every header.
 */
export function encodeOutboxRow(event: OutboxEvent, createdAt: Date = new Date()): OutboxRowValues {
  const id = event.id ?? uuidv7(createdAt.getTime());
  const headers = event.headers ?? {};
  const kafkaHeaders = cloudEventHeaders({ id, type: event.type, source: event.source, time: createdAt.toISOString() }, headers);
  const payload = JSON.stringify(event.data);
  // The exact jsonb size walks the whole value; most events are far below the limit even at the
  // text's upper bound, and then the walk is skipped.
  const bound = jsonbTextBytesUpperBound(payload);
  const fits = bound !== undefined && kafkaRecordBytes(event.key, bound, kafkaHeaders) <= MAX_EVENT_BYTES;
  const refused = unpublishableReason(event.topic, fits ? 0 : kafkaRecordBytes(event.key, jsonbTextBytes(event.data), kafkaHeaders));
  if (refused) throw refused;
  return {
    id,
    topic: event.topic,
    key: event.key,
    type: event.type,
    source: event.source,
    headers: JSON.stringify(headers),
    payload,
    createdAt,
  };
}

// The outbox row's columns as a writer binds them: one array per column, in this order. The
// payload may instead be built in SQL by the statement itself (insertOutboxSql's `payload`).
const OUTBOX_COLUMNS: readonly (readonly [name: string, type: string, value: (row: OutboxRowValues) => unknown])[] = [
  ['event_id', 'uuid', (r) => r.id],
  ['topic', 'text', (r) => r.topic],
  ['key', 'text', (r) => r.key],
  ['type', 'text', (r) => r.type],
  ['source', 'text', (r) => r.source],
  ['headers', 'text', (r) => r.headers],
  ['payload', 'text', (r) => r.payload],
  ['created_at', 'timestamptz', (r) => r.createdAt.toISOString()],
];

/** Whether the statement binds the payload text, or builds it in SQL from its other inputs. */
interface PayloadBinding {
  withPayload?: boolean;
}

const boundColumns = ({ withPayload = true }: PayloadBinding) => OUTBOX_COLUMNS.filter(([name]) => withPayload || name !== 'payload');

/** The outbox rows' columns as parallel arrays, in the order outboxRowsFrom() numbers them. */
export function outboxRowParameters(rows: readonly OutboxRowValues[], binding: PayloadBinding = {}): unknown[] {
  return boundColumns(binding).map(([, , value]) => rows.map(value));
}

/** `unnest(...) WITH ORDINALITY AS <alias>(...)` over outboxRowParameters() bound from $first on. */
export function outboxRowsFrom(first: number, alias: string, binding: PayloadBinding = {}): string {
  const columns = boundColumns(binding);
  const params = columns.map(([, type], i) => `$${first + i}::${type}[]`).join(', ');
  return `unnest(${params}) WITH ORDINALITY AS ${alias}(${columns.map(([name]) => name).join(', ')}, ord)`;
}

/**
 * THE outbox insert: rows of `alias` (an outboxRowsFrom() relation, possibly joined in `from`)
 * in their ordinal order, so seq follows the order the writer gave. Returns each row's shard.
 * `payload` is the SQL of the jsonb payload: by default the bound text, cast.
 */
export function insertOutboxSql(from: string, alias: string, payload = `${alias}.payload::jsonb`): string {
  return `INSERT INTO outbox (id, shard, topic, key, type, source, headers, payload, created_at)
    SELECT ${alias}.event_id, outbox_shard_of(${alias}.key), ${alias}.topic, ${alias}.key, ${alias}.type, ${alias}.source,
           ${alias}.headers::jsonb, ${payload}, ${alias}.created_at
    FROM ${from} ORDER BY ${alias}.ord
    RETURNING shard`;
}

/** Inserts events into the outbox inside the caller's transaction. Returns their ids. */
export async function insertOutboxEvents(trx: Transaction<Database>, events: OutboxEvent[]): Promise<string[]> {
  if (events.length === 0) return [];
  const now = new Date();
  const rows = events.map((event) => encodeOutboxRow(event, now));
  const text = insertOutboxSql(outboxRowsFrom(1, 'event'), 'event');
  await trx.executeQuery(CompiledQuery.raw(text, outboxRowParameters(rows)));
  return rows.map((r) => r.id);
}

/**
 * Bytes of `value` as Postgres prints it back from jsonb, which is what the relay sends: JSON
 * with a space after every ':' and ',', and numbers in plain notation (1e+21 comes back as 22
 * digits). Strings are escaped the same way by both. Object keys are unique after JSON.parse,
 * as in jsonb, so reordering changes nothing here.
 */
export function jsonbTextBytes(value: unknown): number {
  if (value === null) return 4;
  switch (typeof value) {
    case 'string':
      return Buffer.byteLength(JSON.stringify(value));
    case 'number':
      return Number.isFinite(value) ? plainNumberLength(JSON.stringify(value)) : 4;
    case 'boolean':
      return value ? 4 : 5;
    case 'object': {
      const json = value as { toJSON?: () => unknown };
      if (typeof json.toJSON === 'function') return jsonbTextBytes(json.toJSON());
      if (Array.isArray(value)) {
        let bytes = 2 + Math.max(0, value.length - 1) * 2;
        for (const item of value) bytes += item === undefined || typeof item === 'function' ? 4 : jsonbTextBytes(item);
        return bytes;
      }
      let bytes = 2;
      let members = 0;
      for (const [key, item] of Object.entries(value)) {
        if (item === undefined || typeof item === 'function' || typeof item === 'symbol') continue;
        bytes += Buffer.byteLength(JSON.stringify(key)) + 2 + jsonbTextBytes(item);
        members++;
      }
      return bytes + Math.max(0, members - 1) * 2;
    }
    default:
      return 4;
  }
}

/**
 * An upper bound of jsonbTextBytes() from the JSON text alone, or undefined when the text may hold
 * a number in exponent notation (Postgres prints it in full: 1e300 is 301 digits). JSON.stringify
 * always writes an exponent with its sign ("1e+21", "1e-7"); hex digits in a uuid never match,
 * and a string that does only costs the exact walk. Otherwise each UTF-16 unit of the text becomes
 * at most 3 UTF-8 bytes, and a separator (1 unit) becomes 2 bytes (", " or ": ").
 */
export function jsonbTextBytesUpperBound(json: string): number | undefined {
  return /\de[+-]\d/.test(json) ? undefined : 3 * json.length;
}

/** Length of a JSON number as Postgres' numeric prints it: no exponent, the scale of the input. */
function plainNumberLength(text: string): number {
  const match = /^(-?)(\d+)(?:\.(\d+))?(?:e([+-]?\d+))?$/i.exec(text);
  if (!match) return text.length;
  const [, sign = '', whole = '', fraction = '', exponentText] = match;
  if (exponentText === undefined) return text.length;
  const exponent = Number(exponentText);
  const digits = (whole + fraction).replace(/^0+(?=\d)/, '');
  const scale = Math.max(0, fraction.length - exponent);
  const integerDigits = digits.length - fraction.length + exponent;
  const integerPart = Math.max(1, integerDigits);
  return sign.length + integerPart + (scale > 0 ? 1 + scale : 0);
}
