// The real broker works through @confluentinc/kafka-javascript: one message produced by the
// idempotent producer and consumed back with its key and headers.
import { afterAll, describe, expect, it } from '@jest/globals';
import { createIdempotentProducer, createKafka, ensureTopics } from '../src/kafka.js';
import { kafkaBrokers, uniqueName, waitFor } from './helpers.js';

describe('Kafka smoke', () => {
  const kafka = createKafka(kafkaBrokers(), 'evalbox-test');
  const producer = createIdempotentProducer(kafka);
  const consumer = kafka.consumer({ kafkaJS: { groupId: uniqueName('smoke'), fromBeginning: true } });

  afterAll(async () => {
    await producer.disconnect();
    await consumer.disconnect();
  });

  it('produces one message with headers and consumes it back from the real broker', async () => {
    const topic = uniqueName('smoke');
    await ensureTopics(kafka, [{ topic, numPartitions: 1 }]);
    await producer.connect();
    const [report] = await producer.send({ topic, messages: [{ key: 'app-1', value: '{"hello":"world"}', headers: { ce_id: 'evt-1' } }] });
    expect(report?.errorCode).toBe(0);

    const received: { key: string; value: string; ceId: string }[] = [];
    await consumer.connect();
    await consumer.subscribe({ topic });
    await consumer.run({
      eachMessage: async ({ message }) => {
        received.push({ key: String(message.key), value: String(message.value), ceId: String(message.headers?.ce_id) });
      },
    });
    await waitFor(() => received.length > 0, { what: 'the message', timeoutMs: 60_000 });
    expect(received).toEqual([{ key: 'app-1', value: '{"hello":"world"}', ceId: 'evt-1' }]);
  });
});
