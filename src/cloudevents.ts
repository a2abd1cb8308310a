// CloudEvents 1.0, Kafka protocol binding, binary mode: the Kafka value is the event data (JSON),
// the attributes travel as ce_* headers. ce_id is the outbox event id, stable across redelivery.
import { dataSchemaOf } from './schemas/events.js';

export interface CloudEventAttributes {
  id: string;
  type: string;
  source: string;
  time: string;
  traceparent?: string;
  /** The URI of the JSON Schema of `data`; by default the current schema of the event type. */
  dataschema?: string;
}

export type KafkaHeaders = Record<string, string>;

/**
 * The row's own headers first, then the attributes, which always win. Built by assignment: an
 * object spread of a row's non-empty headers (a traceparent, with tracing on) followed by more
 * properties cost 6-7 µs per row in V8, most of the relay's row-to-message work
 * (`bench/relay-handoff.ts`); this costs under 0.1 µs.
 */
export function cloudEventHeaders(attributes: CloudEventAttributes, extra: Record<string, string> = {}): KafkaHeaders {
  const headers: KafkaHeaders = {};
  // Own keys only, as a spread copies; "__proto__" (a key JSON.parse can produce) as a plain header.
  for (const name of Object.keys(extra)) {
    if (name === '__proto__') Object.defineProperty(headers, name, { value: extra[name], enumerable: true, writable: true, configurable: true });
    else headers[name] = extra[name] as string;
  }
  headers.ce_id = attributes.id;
  headers.ce_type = attributes.type;
  headers.ce_source = attributes.source;
  headers.ce_specversion = '1.0';
  headers.ce_time = attributes.time;
  headers['content-type'] = 'application/json';
  const dataschema = attributes.dataschema ?? dataSchemaOf(attributes.type);
  if (dataschema) headers.ce_dataschema = dataschema;
  if (attributes.traceparent) headers.traceparent = attributes.traceparent;
  return headers;
}

/** Reads the ce_* attributes back from received Kafka headers (values may be Buffers). */
export function readCloudEventHeaders(headers: Record<string, unknown> | undefined): Partial<CloudEventAttributes> & { specversion?: string } {
  const text = (name: string): string | undefined => {
    const value = headers?.[name];
    if (value === undefined || value === null) return undefined;
    const first: unknown = Array.isArray(value) ? value[0] : value;
    return Buffer.isBuffer(first) ? first.toString('utf8') : String(first);
  };
  return {
    id: text('ce_id'),
    type: text('ce_type'),
    source: text('ce_source'),
    time: text('ce_time'),
    specversion: text('ce_specversion'),
    dataschema: text('ce_dataschema'),
    traceparent: text('traceparent'),
  };
}
