// CloudEvents 1.0, Kafka protocol binding, binary mode: the Kafka value is the event data (JSON),
// the attributes travel as ce_* headers. ce_id is the outbox event id, stable across redelivery.
export interface CloudEventAttributes {
  id: string;
  type: string;
  source: string;
  time: string;
  traceparent?: string;
}

export type KafkaHeaders = Record<string, string>;

export function cloudEventHeaders(attributes: CloudEventAttributes, extra: Record<string, string> = {}): KafkaHeaders {
  const headers: KafkaHeaders = {
    ...extra,
    ce_id: attributes.id,
    ce_type: attributes.type,
    ce_source: attributes.source,
    ce_specversion: '1.0',
    ce_time: attributes.time,
    'content-type': 'application/json',
  };
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
    traceparent: text('traceparent'),
  };
}
