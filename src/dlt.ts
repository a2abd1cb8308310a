// Dead letters: reading the DLT topic back and republishing records to their original topic.
// Redrive is safe to repeat: a redrive is identified by the DLT record it republishes, and the
// scorer applies each at most once.
import kafkaJs from '@confluentinc/kafka-javascript';
import { classifyKafkaError, createKafka, READER_SETTINGS, type Producer } from './kafka.js';

export interface DeadLetter {
  /** `partition:offset` on the DLT topic. */
  ref: string;
  partition: number;
  offset: number;
  key: string | null;
  value: Buffer | null;
  headers: Record<string, string>;
  timestamp: number;
}

/** Reads every record of `topic` from the earliest offset up to the current high watermarks. */
export async function readDeadLetters(brokers: string, topic: string): Promise<DeadLetter[]> {
  const admin = createKafka(brokers, 'evalbox-dlt-reader').admin();
  await admin.connect();
  let offsets: { partition: number; high: string; low: string }[];
  try {
    offsets = await admin.fetchTopicOffsets(topic);
  } finally {
    await admin.disconnect();
  }
  const wanted = offsets.filter((o) => Number(o.high) > Number(o.low));
  if (wanted.length === 0) return [];
  const consumer = new kafkaJs.KafkaConsumer(
    { 'bootstrap.servers': brokers, 'group.id': `evalbox-dlt-reader-${process.pid}-${Date.now()}`, 'enable.auto.commit': false, ...READER_SETTINGS },
    {},
  );
  await new Promise<void>((resolve, reject) => consumer.connect({ timeout: 30_000 }, (error) => (error ? reject(classifyKafkaError(error)) : resolve())));
  try {
    consumer.assign(wanted.map((o) => ({ topic, partition: o.partition, offset: Number(o.low) })));
    const remaining = new Map(wanted.map((o) => [o.partition, Number(o.high) - 1]));
    const records: DeadLetter[] = [];
    const deadline = Date.now() + 30_000;
    while (remaining.size > 0 && Date.now() < deadline) {
      const batch = await new Promise<kafkaJs.Message[]>((resolve, reject) =>
        consumer.consume(500, (error, messages) => (error ? reject(classifyKafkaError(error)) : resolve(messages))),
      );
      for (const m of batch) {
        const headers: Record<string, string> = {};
        for (const h of m.headers ?? []) for (const [k, v] of Object.entries(h)) headers[k] = Buffer.isBuffer(v) ? v.toString('utf8') : String(v);
        records.push({
          ref: `${m.partition}:${m.offset}`,
          partition: m.partition,
          offset: m.offset,
          key: m.key === undefined || m.key === null ? null : m.key.toString(),
          value: m.value,
          headers,
          timestamp: m.timestamp ?? 0,
        });
        if (m.offset >= (remaining.get(m.partition) ?? Infinity)) remaining.delete(m.partition);
      }
    }
    return records.sort((a, b) => a.timestamp - b.timestamp || a.partition - b.partition || a.offset - b.offset);
  } finally {
    await new Promise<void>((resolve) => consumer.disconnect(() => resolve()));
  }
}

/**
 * The records a redrive should republish: for each original event (its CloudEvents id, else its
 * origin topic, partition and offset) only the newest dead letter. An older record of the same
 * event describes a failure a later delivery already replaced.
 */
export function latestPerEvent(records: DeadLetter[]): DeadLetter[] {
  const newest = new Map<string, DeadLetter>();
  for (const record of records) {
    const h = record.headers;
    const id = h.ce_id ?? `${h.dlt_original_topic}:${h.dlt_original_partition}:${h.dlt_original_offset}`;
    const seen = newest.get(id);
    if (!seen || record.timestamp > seen.timestamp || (record.timestamp === seen.timestamp && record.offset > seen.offset)) newest.set(id, record);
  }
  return records.filter((r) => [...newest.values()].includes(r));
}

/**
 * Republishes dead letters to their original topic and partition with their original key, value
 * and headers, plus `dlt_redriven_from` (the DLT record), which is the redrive's identity: the
 * scorer applies one redrive at most once, so republishing the same record again changes, pays
 * and publishes nothing. `again` makes a new identity, for trying a failure once more on purpose.
 */
export async function redriveDeadLetters(producer: Producer, dltTopic: string, records: DeadLetter[], options: { again?: boolean } = {}): Promise<string[]> {
  const redriven: string[] = [];
  for (const record of records) {
    const original = record.headers.dlt_original_topic;
    if (!original) continue;
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(record.headers)) if (!k.startsWith('dlt_')) headers[k] = v;
    headers.dlt_redriven_from = `${dltTopic}:${record.ref}${options.again ? `#${Date.now()}` : ''}`;
    const partition = Number(record.headers.dlt_original_partition);
    await producer.send({
      topic: original,
      messages: [{ key: record.key, value: record.value, headers, ...(Number.isInteger(partition) && partition >= 0 ? { partition } : {}) }],
    });
    redriven.push(record.ref);
  }
  return redriven;
}
