// The chaos run's own Postgres and Kafka (one broker or a KRaft cluster), private to the run so
// that it can kill them with -9 and start them again without touching anything else.
import fs from 'node:fs';
import path from 'node:path';
import { defaultCacheDir } from '../../src/config.js';
import { restartKafkaNode, startKafkaCluster, stopKafkaCluster, type KafkaClusterState } from '../../src/stack/kafka-cluster.js';
import { postgresDataDir, startPostgres, stopPostgres, type PostgresState } from '../../src/stack/postgres.js';
import { pidAlive } from '../../src/stack/process.js';

export interface ChaosStack {
  postgres: PostgresState;
  kafka: KafkaClusterState;
  killPostgres(): number | undefined;
  restartPostgres(): Promise<void>;
  /** kill -9 one broker; returns its node id. */
  killBroker(nodeId: number): number;
  restartBroker(nodeId: number): Promise<void>;
  stop(): Promise<void>;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function postmasterPid(state: PostgresState): number | undefined {
  try {
    const pid = Number(fs.readFileSync(path.join(state.dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
    return pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

export async function startChaosStack(dir: string, brokers: number, log: (line: string) => void): Promise<ChaosStack> {
  let postgres = await startPostgres(dir, undefined, log);
  const kafka = await startKafkaCluster(dir, brokers, undefined, log, defaultCacheDir());
  return {
    get postgres() {
      return postgres;
    },
    kafka,
    killPostgres() {
      const pid = postmasterPid(postgres);
      if (pid) process.kill(pid, 'SIGKILL');
      return pid;
    },
    async restartPostgres() {
      // Orphaned backends keep the shared memory attached for a moment after the postmaster dies.
      for (let attempt = 1; ; attempt++) {
        try {
          postgres = await startPostgres(dir, postgres, log);
          return;
        } catch (error) {
          if (attempt >= 30) throw error;
          await sleep(1000);
        }
      }
    },
    killBroker(nodeId) {
      const node = kafka.nodes.find((n) => n.nodeId === nodeId);
      if (!node || !pidAlive(node.pid)) return 0;
      process.kill(node.pid, 'SIGKILL');
      return node.nodeId;
    },
    async restartBroker(nodeId) {
      await restartKafkaNode(kafka, nodeId, log, defaultCacheDir());
    },
    async stop() {
      await stopKafkaCluster(kafka);
      try {
        stopPostgres(postgres);
      } catch {
        const pid = postmasterPid(postgres);
        if (pid) process.kill(pid, 'SIGKILL');
      }
    },
  };
}

/** Removes a stopped chaos stack's files: its directory and the Postgres data kept apart from it (as root). */
export function removeChaosStack(dir: string): void {
  fs.rmSync(path.dirname(postgresDataDir(dir)), { recursive: true, force: true });
  fs.rmSync(dir, { recursive: true, force: true });
}
