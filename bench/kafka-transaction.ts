// Benchmark: what one Kafka transaction of one row costs the relay's producer, apart from the
// relay. A transactional producer configured as the relay's (acks=all, idempotence, linger 0)
// runs begin → produce one message → commit in a loop, one transaction every 50 ms (a sparse
// stream: each transaction registers its partition anew), and reports each step's time; with
// librdkafka's protocol log on, also the broker's round trip per request type, as librdkafka
// measured it (AddPartitionsToTxn, Produce, EndTxn). The relay's own cycle adds its read and its
// cursor update to these (docs/relay.md, "Wake-up").
//   node --import tsx bench/kafka-transaction.ts [--transactions 200]
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { createKafka, createTransactionalProducer, ensureTopics } from '../src/kafka.js';
import { loadAverage, machine, percentile, requireEnv } from './lib.js';

const { values } = parseArgs({ options: { transactions: { type: 'string', default: '200' } } });
const transactions = Number(values.transactions);
const brokers = requireEnv('KAFKA_BROKERS');
const topic = `bench-kafka-transaction-${Date.now()}`;
await ensureTopics(createKafka(brokers, 'evalbox-bench'), [{ topic, numPartitions: 6 }]);

// librdkafka's debug lines, read for "Received <Request>Response (…, rtt 1.53ms)".
const roundTrips = new Map<string, number[]>();
const protocolLog = pino(
  { level: 'debug' },
  {
    write(line: string) {
      const match = /Received (\w+)Response \(.*rtt ([\d.]+)ms\)/.exec(line);
      if (!match) return;
      const [, request, rtt] = match as unknown as [string, string, string];
      roundTrips.set(request, [...(roundTrips.get(request) ?? []), Number(rtt)]);
    },
  },
);

type Steps = Record<'begin' | 'produce' | 'commit' | 'total', number[]>;

/** `transactions` one-row transactions; with `log`, librdkafka's protocol log goes to it. */
async function run(log?: typeof protocolLog): Promise<Steps> {
  const steps: Steps = { begin: [], produce: [], commit: [], total: [] };
  const producer = createTransactionalProducer(brokers, {
    transactionalId: `${topic}.shard-0`,
    ...(log ? { logger: log, overrides: { debug: 'protocol', log_level: 7 } } : {}),
  });
  await producer.connect();
  roundTrips.clear(); // connecting is not part of a transaction
  for (let i = 0; i < transactions; i++) {
    const t0 = performance.now();
    await producer.begin();
    const t1 = performance.now();
    await producer.produceBatch([{ topic, key: `app-${i % 4}`, value: 'x'.repeat(549), headers: { ce_type: 'bench' } }]);
    const t2 = performance.now();
    await producer.commit(10_000);
    const t3 = performance.now();
    steps.begin.push(t1 - t0);
    steps.produce.push(t2 - t1);
    steps.commit.push(t3 - t2);
    steps.total.push(t3 - t0);
    await new Promise((r) => setTimeout(r, 50));
  }
  await producer.disconnect();
  return steps;
}

const startLoad = loadAverage();
// The step times without the protocol log (its lines cost the JavaScript thread), then the round trips with it.
const steps = await run();
await run(protocolLog);

const summary = (xs: number[]) => {
  const sorted = [...xs].sort((a, b) => a - b);
  return `p50 ${percentile(sorted, 50).toFixed(2)}  p90 ${percentile(sorted, 90).toFixed(2)}  p99 ${percentile(sorted, 99).toFixed(2)} ms`;
};
const lines = [
  `Kafka transaction benchmark — ${new Date().toISOString()}`,
  `machine: ${machine()}; load average at start ${startLoad}, at end ${loadAverage()}`,
  `${transactions} transactions of one 549-byte message, one every 50 ms, 6 partitions, the relay's producer settings:`,
  ...Object.entries(steps).map(([step, xs]) => `  ${step.padEnd(8)} ${summary(xs)}`),
  'broker round trips as librdkafka measured them (a second pass, with its protocol log on):',
  ...[...roundTrips].map(([request, xs]) => `  ${request.padEnd(20)} ${summary(xs)}  (${xs.length})`),
];
process.stdout.write(`${lines.join('\n')}\n`);
process.exit(0);
