// Benchmark: what a worker thread for the relay's encoding could take off the relay's one
// JavaScript thread. The relay turns each outbox row into a Kafka message (payload to a Buffer,
// CloudEvents headers) on its main thread; a worker could do that, but the messages must come
// back to the main thread, where the producer lives, and crossing threads costs the main thread a
// structured-clone deserialisation (and, when the rows are read on the main thread, their
// serialisation on the way out). Per batch of rows shaped like the ingest path's, this prints:
//   encode   toKafkaMessage + precheck for every row, as publishRows does (what a worker removes)
//   receive  v8.deserialize of the encoded messages (what any worker design adds, the minimum)
//   send     v8.serialize of the rows (added when the rows are read on the main thread)
// Rounds alternate the three in one process; the medians are what is compared.
//   node --import tsx bench/relay-handoff.ts [--rows 2000] [--rounds 30]
import { parseArgs } from 'node:util';
import v8 from 'node:v8';
import { performance } from 'node:perf_hooks';
import { precheck, toKafkaMessage } from '../outbox-relay/publisher.js';
import type { OutboxRow } from '../outbox-relay/sql.js';
import { INGEST_BODY, machine, median, reportFigures } from './lib.js';

const { values } = parseArgs({ options: { rows: { type: 'string', default: '2000' }, rounds: { type: 'string', default: '30' } } });
const rowCount = Number(values.rows);
const rounds = Number(values.rounds);

const payload = JSON.stringify({
  ...INGEST_BODY,
  evaluationId: '0192f1c2-0000-7000-8000-000000000000',
  applicationId: 'bench',
  createdAt: new Date().toISOString(),
});
const rows: OutboxRow[] = Array.from({ length: rowCount }, (_, i) => ({
  id: `0192f1c2-${String(i).padStart(4, '0')}-7000-8000-000000000000`,
  seq: String(1_000_000 + i),
  xid: String(5_000_000 + i),
  topic: 'evalbox.evaluations',
  key: 'bench',
  type: 'evalbox.evaluation.created',
  source: '/evalbox/api',
  headers: { traceparent: `00-${'a'.repeat(32)}-${'b'.repeat(16)}-01` },
  payload,
  created_at: new Date(),
}));

const time = (f: () => void): number => {
  const t0 = performance.now();
  f();
  return performance.now() - t0;
};
const encode = () =>
  rows.map((row) => {
    const message = toKafkaMessage(row);
    precheck(row, message);
    return message;
  });
const encoded = v8.serialize(encode());
const samples = { encode: [] as number[], receive: [] as number[], send: [] as number[] };
const receive = (): void => {
  v8.deserialize(encoded);
};
const send = (): void => {
  v8.serialize(rows);
};
for (let i = 0; i < 5; i++) [encode, receive, send].forEach((f) => f()); // warm the JIT
for (let r = 0; r < rounds; r++) {
  samples.encode.push(time(encode));
  samples.receive.push(time(receive));
  samples.send.push(time(send));
}
const perRow = (ms: number) => ((ms * 1000) / rowCount).toFixed(2);
const m = { encode: median(samples.encode), receive: median(samples.receive), send: median(samples.send) };
process.stdout.write(
  [
    `relay handoff benchmark — ${new Date().toISOString()}`,
    `machine: ${machine()}; ${rounds} alternating rounds of ${rowCount} rows (payload ${payload.length} bytes)`,
    `encode (main thread today):            ${m.encode.toFixed(2)} ms per batch, ${perRow(m.encode)} µs per row`,
    `receive encoded messages from a worker: ${m.receive.toFixed(2)} ms per batch, ${perRow(m.receive)} µs per row`,
    `send rows to a worker:                  ${m.send.toFixed(2)} ms per batch, ${perRow(m.send)} µs per row`,
    `main-thread work left with a worker: ${((m.receive / m.encode) * 100).toFixed(0)} % of today's encoding when the worker reads the rows itself, ${(((m.receive + m.send) / m.encode) * 100).toFixed(0)} % when the main thread reads them`,
    '',
  ].join('\n'),
);
reportFigures([
  {
    figure: 'relay: main-thread cost of receiving encoded messages from a worker, per row',
    value: (m.receive * 1000) / rowCount,
    unit: 'µs',
    reference: 'encoding on the main thread',
    referenceValue: (m.encode * 1000) / rowCount,
    lowerIsBetter: true,
  },
]);
