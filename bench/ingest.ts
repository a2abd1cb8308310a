// Benchmark: sustained POST /v1/evaluations throughput and latency (autocannon against the real
// API process) versus pgbench running the same two-row INSERT transaction (evaluation row +
// outbox row of the same sizes) against the same Postgres with the same number of clients.
//   eval "$(npx evalbox stack up)"; node --import tsx bench/ingest.ts [--seconds 15] [--connections 32]
import autocannon from 'autocannon';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { findPostgresBinDir } from '../src/stack/postgres.js';
import { freePort } from '../src/stack/process.js';
import { evalbox, freshDatabase, machine, waitForHttp } from './lib.js';

const { values } = parseArgs({ options: { seconds: { type: 'string', default: '15' }, connections: { type: 'string', default: '32' }, 'pool-size': { type: 'string', default: '16' } } });
const seconds = Number(values.seconds);
const connections = Number(values.connections);

const body = {
  prompt: 'Summarise the refund policy for orders shipped to the EU in two sentences. '.repeat(3),
  response: 'Orders shipped to the EU can be returned within 30 days for a full refund. Refunds are issued to the original payment method within 14 days of receipt. '.repeat(2),
  context: ['Refund policy: EU customers may return any order within 30 days of delivery. Refunds go to the original payment method within 14 days.'],
  modelId: 'gpt-4o-mini',
  metadata: { team: 'support', release: '2026.11' },
};

const url = await freshDatabase('evalbox_bench_ingest');
const key = spawnSync('node', ['bin/evalbox.js', 'keys', 'create', '--app', 'bench', '--database-url', url], { encoding: 'utf8' }).stdout.trim();
const port = await freePort();
const adminPort = await freePort();
const api = evalbox(['api', '--port', String(port), '--admin-port', String(adminPort), '--database-url', url, '--pool-size', values['pool-size'] as string]);
await waitForHttp(`http://127.0.0.1:${adminPort}/readyz`);

// Warm up, then measure.
await autocannon({ url: `http://127.0.0.1:${port}/v1/evaluations`, method: 'POST', connections, duration: 2, headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
const result = await autocannon({
  url: `http://127.0.0.1:${port}/v1/evaluations`,
  method: 'POST',
  connections,
  duration: seconds,
  headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
  body: JSON.stringify(body),
});
api.kill('SIGTERM');
const non2xx = result.non2xx + result.errors;

// pgbench: the same two rows, same sizes, one transaction per client loop.
const evalPayload = JSON.stringify({ schemaVersion: 1, evaluationId: '00000000-0000-7000-8000-000000000000', applicationId: 'bench', ...body, reference: null, dimensions: ['groundedness', 'answer_relevance', 'pii_leak', 'toxicity'], createdAt: new Date().toISOString() });
// pgbench reads ":name" as a variable, so text is passed base64-encoded (no colons).
const quote = (s: string) => `convert_from(decode('${Buffer.from(s).toString('base64')}', 'base64'), 'UTF8')`;
const script = `BEGIN;
INSERT INTO evaluations (id, application_id, model_id, prompt, response, context, metadata, dimensions) VALUES (gen_random_uuid(), 'pgbench', ${quote(body.modelId)}, ${quote(body.prompt)}, ${quote(body.response)}, ${quote(JSON.stringify(body.context))}::jsonb, ${quote(JSON.stringify(body.metadata))}::jsonb, '{groundedness,answer_relevance,pii_leak,toxicity}');
INSERT INTO outbox (id, shard, topic, key, type, source, headers, payload) VALUES (gen_random_uuid(), outbox_shard_of('pgbench'), 'llm-evaluation-events', 'pgbench', 'evaluation.created', '/evalbox/api', '{}', ${quote(evalPayload)}::jsonb);
END;
`;
const scriptFile = path.join(os.tmpdir(), `evalbox-ingest-${process.pid}.sql`);
fs.writeFileSync(scriptFile, script);
const pgbench = path.join(findPostgresBinDir() as string, 'pgbench');
const u = new URL(url);
const bench = spawnSync(pgbench, ['-n', '-M', 'prepared', '-c', String(connections), '-j', '2', '-T', String(seconds), '-f', scriptFile, '-h', u.hostname, '-p', u.port, '-U', u.username, u.pathname.slice(1)], { encoding: 'utf8' });
fs.rmSync(scriptFile);
if (bench.status !== 0) throw new Error(`pgbench failed: ${bench.stderr}`);
const tps = Number(/tps = ([\d.]+)/.exec(bench.stdout)?.[1]);
const pgLatency = Number(/latency average = ([\d.]+) ms/.exec(bench.stdout)?.[1]);

const apiRps = result.requests.average;
const lines = [
  `ingest benchmark — ${new Date().toISOString()}`,
  `machine: ${machine()}`,
  `load: ${connections} connections for ${seconds} s; API pool ${values['pool-size']} connections; body ${JSON.stringify(body).length} bytes`,
  `API  POST /v1/evaluations: ${apiRps.toFixed(0)} req/s, p50 ${result.latency.p50} ms, p99 ${result.latency.p99} ms, non-2xx/errors ${non2xx}`,
  `pgbench same 2-row INSERT transaction: ${tps.toFixed(0)} tps, average latency ${pgLatency} ms`,
  `ratio API/pgbench: ${(apiRps / tps).toFixed(2)}`,
];
process.stdout.write(`${lines.join('\n')}\n`);
