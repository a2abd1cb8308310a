// `evalbox stack up|down|status`: the local Postgres and Kafka, started by the project itself.
// Idempotent: a second `up` reuses what runs; DATABASE_URL / KAFKA_BROKERS that already point
// at reachable servers are used as they are.
import fs from 'node:fs';
import path from 'node:path';
import { ConfigError } from '../errors.js';
import { isKafkaReady } from '../kafka.js';
import { startKafka, stopKafka, type KafkaState } from './kafka.js';
import { startKafkaCluster, stopKafkaCluster, type KafkaClusterState } from './kafka-cluster.js';
import { isPostgresReachable, startPostgres, stopPostgres, type PostgresState } from './postgres.js';
import { pidAlive, waitUntil } from './process.js';

export interface StackState {
  postgres?: PostgresState;
  kafka?: KafkaState;
  /** A multi-broker cluster, started by `stack up --brokers N` with N > 1. */
  cluster?: KafkaClusterState;
}

export interface StackEndpoints {
  databaseUrl: string;
  kafkaBrokers: string;
  /** Which of the two this process started (false: reused or given). */
  started: { postgres: boolean; kafka: boolean };
}

const stateFile = (cacheDir: string) => path.join(cacheDir, 'stack', 'state.json');

export function readStackState(cacheDir: string): StackState {
  try {
    return JSON.parse(fs.readFileSync(stateFile(cacheDir), 'utf8')) as StackState;
  } catch {
    return {};
  }
}

function writeStackState(cacheDir: string, state: StackState): void {
  fs.mkdirSync(path.dirname(stateFile(cacheDir)), { recursive: true });
  fs.writeFileSync(stateFile(cacheDir), `${JSON.stringify(state, null, 2)}\n`);
}

/** Serialises concurrent `stack up` calls on one machine with a lock directory. */
async function withStackLock<T>(cacheDir: string, work: () => Promise<T>): Promise<T> {
  const lock = path.join(cacheDir, 'stack', 'lock');
  fs.mkdirSync(path.dirname(lock), { recursive: true });
  await waitUntil(
    async () => {
      try {
        fs.mkdirSync(lock);
        fs.writeFileSync(path.join(lock, 'pid'), String(process.pid));
        return true;
      } catch {
        const holder = Number(fs.readFileSync(path.join(lock, 'pid'), 'utf8').trim() || 0);
        if (holder && !pidAlive(holder)) fs.rmSync(lock, { recursive: true, force: true });
        return false;
      }
    },
    300_000,
    'the stack lock',
  );
  try {
    return await work();
  } finally {
    fs.rmSync(lock, { recursive: true, force: true });
  }
}

export async function stackUp(options: {
  cacheDir: string;
  databaseUrl?: string;
  kafkaBrokers?: string;
  /** How many Kafka brokers to start when none is given (1, the default, or a cluster). */
  brokerCount?: number;
  log: (line: string) => void;
}): Promise<StackEndpoints> {
  const { cacheDir, log } = options;
  return withStackLock(cacheDir, async () => {
    const state = readStackState(cacheDir);
    const started = { postgres: false, kafka: false };

    let databaseUrl = options.databaseUrl;
    if (databaseUrl && !(await isPostgresReachable(databaseUrl))) {
      throw new ConfigError(`DATABASE_URL is set but ${redactUrl(databaseUrl)} is not reachable; unset it to start a local Postgres`);
    }
    if (!databaseUrl) {
      if (state.postgres && (await isPostgresReachable(state.postgres.url))) {
        databaseUrl = state.postgres.url;
      } else {
        state.postgres = await startPostgres(cacheDir, state.postgres, log);
        writeStackState(cacheDir, state);
        databaseUrl = state.postgres.url;
        started.postgres = true;
      }
    }

    let kafkaBrokers = options.kafkaBrokers;
    if (kafkaBrokers && !(await isKafkaReady(kafkaBrokers))) {
      throw new ConfigError(`KAFKA_BROKERS is set but ${kafkaBrokers} does not answer; unset it to start a local broker`);
    }
    const brokerCount = options.brokerCount ?? 1;
    if (!kafkaBrokers && brokerCount > 1) {
      const cluster = state.cluster;
      if (cluster && cluster.nodes.length === brokerCount && cluster.nodes.every((n) => pidAlive(n.pid)) && (await isKafkaReady(cluster.brokers))) {
        kafkaBrokers = cluster.brokers;
      } else {
        state.cluster = await startKafkaCluster(cacheDir, brokerCount, cluster, log);
        writeStackState(cacheDir, state);
        kafkaBrokers = state.cluster.brokers;
        await waitUntil(() => isKafkaReady(kafkaBrokers as string), 120_000, 'Kafka cluster metadata', 500);
        started.kafka = true;
      }
    }
    if (!kafkaBrokers) {
      if (state.kafka && pidAlive(state.kafka.pid) && (await isKafkaReady(state.kafka.brokers))) {
        kafkaBrokers = state.kafka.brokers;
      } else {
        state.kafka = await startKafka(cacheDir, state.kafka, log);
        writeStackState(cacheDir, state);
        kafkaBrokers = state.kafka.brokers;
        await waitUntil(() => isKafkaReady(kafkaBrokers as string), 60_000, 'Kafka metadata', 500);
        started.kafka = true;
      }
    }
    return { databaseUrl, kafkaBrokers, started };
  });
}

export async function stackDown(options: { cacheDir: string; log: (line: string) => void }): Promise<void> {
  const state = readStackState(options.cacheDir);
  if (state.kafka) {
    options.log(`stopping Kafka (pid ${state.kafka.pid})`);
    await stopKafka(state.kafka);
  }
  if (state.cluster) {
    options.log(`stopping the Kafka cluster (${state.cluster.nodes.length} nodes)`);
    await stopKafkaCluster(state.cluster);
  }
  if (state.postgres) {
    options.log(`stopping Postgres (${state.postgres.dataDir})`);
    stopPostgres(state.postgres);
  }
}

export interface StackStatus {
  postgres: { running: boolean; url?: string; dataDir?: string; logFile?: string };
  kafka: { running: boolean; brokers?: string; pid?: number; logFile?: string };
  cluster?: { running: boolean; brokers: string; nodes: { nodeId: number; running: boolean; pid: number; logFile: string }[] };
}

export async function stackStatus(cacheDir: string): Promise<StackStatus> {
  const state = readStackState(cacheDir);
  return {
    postgres: {
      running: state.postgres ? await isPostgresReachable(state.postgres.url) : false,
      url: state.postgres?.url,
      dataDir: state.postgres?.dataDir,
      logFile: state.postgres?.logFile,
    },
    kafka: {
      running: state.kafka ? pidAlive(state.kafka.pid) && (await isKafkaReady(state.kafka.brokers)) : false,
      brokers: state.kafka?.brokers,
      pid: state.kafka?.pid,
      logFile: state.kafka?.logFile,
    },
    cluster: state.cluster && {
      running: state.cluster.nodes.every((n) => pidAlive(n.pid)) && (await isKafkaReady(state.cluster.brokers)),
      brokers: state.cluster.brokers,
      nodes: state.cluster.nodes.map((n) => ({ nodeId: n.nodeId, running: pidAlive(n.pid), pid: n.pid, logFile: n.logFile })),
    },
  };
}

export function redactUrl(url: string): string {
  return url.replace(/\/\/([^:@/]+):[^@/]+@/, '//$1:***@');
}
