// `npm run chaos`: the whole platform on a private stack (three brokers by default) under seeded
// faults, then a table of invariants. Exits 1 if any invariant fails. See docs/chaos.md.
//   --count N      evaluations to send (default 100000)      --seed S     fault schedule (default: random)
//   --brokers N    Kafka brokers (default 3)                  --apps N     applications (default 64)
//   --duration S   longest the traffic may run (default 1800) --drain S    drain timeout (default 300)
//   --keep         keep the stack's directory and logs
import { parseArgs } from 'node:util';
import { runChaos } from './chaos.js';
import { formatTable } from './invariants.js';

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      count: { type: 'string', default: '100000' },
      seed: { type: 'string' },
      brokers: { type: 'string', default: '3' },
      apps: { type: 'string', default: '64' },
      duration: { type: 'string', default: '1800' },
      drain: { type: 'string', default: '300' },
      keep: { type: 'boolean', default: false },
    },
  });
  const result = await runChaos({
    count: Number(values.count),
    seed: values.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : Number(values.seed),
    brokers: Number(values.brokers),
    apps: Number(values.apps),
    durationSeconds: Number(values.duration),
    drainSeconds: Number(values.drain),
    keep: values.keep,
    say: (line) => process.stderr.write(`chaos: ${line}\n`),
  });
  process.stdout.write(`\n${formatTable(result.invariants)}\n\n${result.summary}\n`);
  if (!result.ok) process.stdout.write(`logs: ${result.logDir}\n`);
  return result.ok ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (error: Error) => {
    process.stderr.write(`chaos: ${error.stack ?? error.message}\n`);
    process.exit(2);
  },
);
