// What a span costs while tracing is off (the default): inSpan around an async no-op against the
// bare call, per call, in-process. Prints nanoseconds per call; no assertions.
// Run: npx tsx bench/tracing-overhead.ts [calls]
import { contextFromTraceparent, inSpan, traceparentOf } from '../src/tracing.js';

const calls = Number(process.argv[2] ?? 200_000);
const work = async (n: number) => n + 1;
const parent = contextFromTraceparent('00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01');

async function time(label: string, run: (i: number) => Promise<unknown>): Promise<number> {
  for (let i = 0; i < 10_000; i++) await run(i); // warm-up
  const started = process.hrtime.bigint();
  for (let i = 0; i < calls; i++) await run(i);
  const ns = Number(process.hrtime.bigint() - started) / calls;
  process.stdout.write(`${label.padEnd(44)} ${ns.toFixed(0).padStart(6)} ns/call\n`);
  return ns;
}

const bare = await time('bare async call', (i) => work(i));
const span = await time('inSpan, tracing off', (i) => inSpan('x', {}, () => work(i)));
const remote = await time('inSpan from a traceparent + traceparentOf', (i) => inSpan('x', { parent }, async (s) => (traceparentOf(s), work(i))));
process.stdout.write(`overhead per span (off): ${(span - bare).toFixed(0)} ns; with a remote parent and formatting: ${(remote - bare).toFixed(0)} ns\n`);
