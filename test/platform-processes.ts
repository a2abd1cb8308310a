// The platform as real processes for end-to-end tests: the API, a relay and the scorer, each
// `node bin/evalbox.js <command>` against the test's own database and topics, with every line
// each process writes kept for assertions.
import { spawn, type ChildProcess } from 'node:child_process';
import { freePort } from '../src/stack/process.js';
import { kafkaBrokers, uniqueName, waitFor, type TestDatabase } from './helpers.js';

export interface PlatformProcess {
  name: string;
  child: ChildProcess;
  output(): string;
}

export interface Platform {
  apiUrl: string;
  topics: { events: string; scores: string; dlt: string };
  processes: PlatformProcess[];
  /** Everything every process wrote, stdout and stderr. */
  output(): string;
  stop(): Promise<void>;
}

function start(name: string, args: string[], env: NodeJS.ProcessEnv): PlatformProcess {
  let output = '';
  const child = spawn('node', ['bin/evalbox.js', ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout?.on('data', (d) => (output += d));
  child.stderr?.on('data', (d) => (output += d));
  return { name, child, output: () => output };
}

/**
 * Starts scorer, relay and API (in that order: the scorer publishes its judge dimensions before
 * the API is asked for them). `env` applies to all three; `perProcess` to one of them.
 */
export async function startPlatform(
  database: TestDatabase,
  env: Record<string, string>,
  perProcess: Partial<Record<'api' | 'relay' | 'scorer', Record<string, string>>> = {},
): Promise<Platform> {
  const base = uniqueName('platform');
  const topics = { events: `${base}-events`, scores: `${base}-scores`, dlt: `${base}-events.DLT` };
  const common: NodeJS.ProcessEnv = {
    ...process.env,
    DATABASE_URL: database.url,
    KAFKA_BROKERS: kafkaBrokers(),
    EVALBOX_TOPIC_EVENTS: topics.events,
    EVALBOX_TOPIC_SCORES: topics.scores,
    EVALBOX_TOPIC_DLT: topics.dlt,
    EVALBOX_SCORER_GROUP: uniqueName('platform-scorer'),
    EVALBOX_TOPIC_PARTITIONS: '1',
    EVALBOX_LOG_LEVEL: 'debug',
    ...env,
  };
  const processes: PlatformProcess[] = [];
  const stop = async () => {
    for (const p of processes) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGTERM');
    await Promise.all(
      processes.map(
        (p) =>
          new Promise<void>((resolve) => {
            if (p.child.exitCode !== null || p.child.signalCode !== null) return resolve();
            const hard = setTimeout(() => p.child.kill('SIGKILL'), 20_000);
            p.child.once('exit', () => {
              clearTimeout(hard);
              resolve();
            });
          }),
      ),
    );
  };
  try {
    const scorer = start('scorer', ['scorer'], { ...common, ...perProcess.scorer });
    processes.push(scorer);
    await waitFor(() => scorer.output().includes('scorer started'), { what: 'the scorer to start', timeoutMs: 60_000 });
    const relay = start('relay', ['relay'], { ...common, ...perProcess.relay });
    processes.push(relay);
    await waitFor(() => relay.output().includes('relay started'), { what: 'the relay to start', timeoutMs: 60_000 });
    const port = await freePort();
    const api = start('api', ['api', '--port', String(port)], { ...common, ...perProcess.api });
    processes.push(api);
    await waitFor(() => api.output().includes('evalbox api listening'), { what: 'the api to listen', timeoutMs: 60_000 });
    return { apiUrl: `http://127.0.0.1:${port}`, topics, processes, output: () => processes.map((p) => p.output()).join('\n'), stop };
  } catch (error) {
    const seen = processes.map((p) => `--- ${p.name}\n${p.output().slice(-3000)}`).join('\n');
    await stop();
    throw new Error(`${(error as Error).message}\n${seen}`, { cause: error });
  }
}
