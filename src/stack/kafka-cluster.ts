// A real three-node (or N-node) Apache Kafka cluster in KRaft mode on loopback: the same jars as
// the single broker, one log directory per node, every node a broker and a voter of one
// controller quorum. Topics created with the broker defaults get replication factor N (up to 3)
// and min.insync.replicas N-1, so a test or the chaos run can kill one broker and keep producing.
import fs from 'node:fs';
import path from 'node:path';
import { ConfigError } from '../errors.js';
import { clusterId, ensureJava, ensureKafkaJars, javaArgs, KAFKA_VERSION } from './kafka.js';
import { canConnect, freePort, pidAlive, run, spawnDetached, waitUntil } from './process.js';

export interface KafkaNodeState {
  nodeId: number;
  port: number;
  controllerPort: number;
  dir: string;
  logFile: string;
  pid: number;
}

export interface KafkaClusterState {
  clusterId: string;
  nodes: KafkaNodeState[];
  /** The bootstrap list, every node's client listener. */
  brokers: string;
}

function nodeProperties(node: KafkaNodeState, all: KafkaNodeState[]): string {
  const size = all.length;
  const replication = Math.min(size, 3);
  const minIsr = Math.max(1, replication - 1);
  return [
    'process.roles=broker,controller',
    `node.id=${node.nodeId}`,
    `controller.quorum.voters=${all.map((n) => `${n.nodeId}@127.0.0.1:${n.controllerPort}`).join(',')}`,
    `listeners=PLAINTEXT://127.0.0.1:${node.port},CONTROLLER://127.0.0.1:${node.controllerPort}`,
    `advertised.listeners=PLAINTEXT://127.0.0.1:${node.port}`,
    'controller.listener.names=CONTROLLER',
    'inter.broker.listener.name=PLAINTEXT',
    'listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT',
    `log.dirs=${path.join(node.dir, 'data')}`,
    'num.partitions=3',
    'auto.create.topics.enable=true',
    `default.replication.factor=${replication}`,
    `min.insync.replicas=${minIsr}`,
    `offsets.topic.replication.factor=${replication}`,
    'offsets.topic.num.partitions=10',
    `transaction.state.log.replication.factor=${replication}`,
    `transaction.state.log.min.isr=${minIsr}`,
    `share.coordinator.state.topic.replication.factor=${replication}`,
    `share.coordinator.state.topic.min.isr=${minIsr}`,
    'group.initial.rebalance.delay.ms=0',
    // A replica that lost its broker is out of the ISR within seconds, not the default 30 s.
    'replica.lag.time.max.ms=10000',
    'unclean.leader.election.enable=false',
    'message.max.bytes=1048588',
    '',
  ].join('\n');
}

const nodeDir = (cacheDir: string, nodeId: number) => path.join(cacheDir, 'kafka', 'cluster', `node-${nodeId}`);
const configFile = (node: KafkaNodeState) => path.join(node.dir, 'server.properties');

/** Starts one node of the cluster (its config written afresh from the cluster's ports). */
export async function startKafkaNode(cluster: KafkaClusterState, nodeId: number, libs: string, log: (line: string) => void): Promise<KafkaNodeState> {
  const node = cluster.nodes.find((n) => n.nodeId === nodeId);
  if (!node) throw new ConfigError(`no node ${nodeId} in the cluster`);
  if (pidAlive(node.pid)) return node;
  fs.mkdirSync(node.dir, { recursive: true });
  fs.writeFileSync(configFile(node), nodeProperties(node, cluster.nodes));
  if (!fs.existsSync(path.join(node.dir, 'data', 'meta.properties'))) {
    run('java', [...javaArgs(libs), 'kafka.tools.StorageTool', 'format', `--cluster-id=${cluster.clusterId}`, '-c', configFile(node)], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  }
  const logFd = fs.openSync(node.logFile, 'a');
  log(`starting Kafka ${KAFKA_VERSION} node ${nodeId} on 127.0.0.1:${node.port} (log: ${node.logFile})`);
  node.pid = spawnDetached('java', [...javaArgs(libs), 'kafka.Kafka', configFile(node)], { cwd: node.dir, logFd });
  fs.closeSync(logFd);
  return node;
}

async function waitForNode(node: KafkaNodeState): Promise<void> {
  await waitUntil(
    async () => {
      if (!pidAlive(node.pid)) throw new ConfigError(`Kafka node ${node.nodeId} exited during start-up; see ${node.logFile}`);
      return canConnect('127.0.0.1', node.port);
    },
    120_000,
    `Kafka node ${node.nodeId}`,
  );
}

/**
 * Starts an N-node cluster whose data lives under `cacheDir` (ports and cluster id reused from
 * `previous`, so a restart keeps the quorum's addresses). `jarsCacheDir` lets a private cluster
 * share the resolved jars.
 */
export async function startKafkaCluster(
  cacheDir: string,
  size: number,
  previous: KafkaClusterState | undefined,
  log: (line: string) => void,
  jarsCacheDir: string = cacheDir,
): Promise<KafkaClusterState> {
  if (!Number.isInteger(size) || size < 1 || size > 9) throw new ConfigError(`a cluster has 1 to 9 brokers, got ${size}`);
  ensureJava(log);
  const libs = ensureKafkaJars(jarsCacheDir, log);
  const reuse = previous && previous.nodes.length === size ? previous : undefined;
  if (!reuse) fs.rmSync(path.join(cacheDir, 'kafka', 'cluster'), { recursive: true, force: true });
  const taken = new Set<number>();
  const pick = async (preferred?: number) => {
    let port = await freePort(preferred);
    while (taken.has(port)) port = await freePort();
    taken.add(port);
    return port;
  };
  const nodes: KafkaNodeState[] = [];
  for (let nodeId = 1; nodeId <= size; nodeId++) {
    const before = reuse?.nodes.find((n) => n.nodeId === nodeId);
    const dir = nodeDir(cacheDir, nodeId);
    nodes.push({
      nodeId,
      port: await pick(before?.port),
      controllerPort: await pick(before?.controllerPort),
      dir,
      logFile: path.join(dir, 'server.log'),
      pid: before && pidAlive(before.pid) ? before.pid : 0,
    });
  }
  const cluster: KafkaClusterState = { clusterId: reuse?.clusterId ?? clusterId(), nodes, brokers: nodes.map((n) => `127.0.0.1:${n.port}`).join(',') };
  for (const node of nodes) await startKafkaNode(cluster, node.nodeId, libs, log);
  for (const node of nodes) await waitForNode(node);
  return cluster;
}

/** Restarts one stopped node of a running cluster (after a kill -9, say). */
export async function restartKafkaNode(cluster: KafkaClusterState, nodeId: number, log: (line: string) => void, jarsCacheDir: string): Promise<void> {
  const libs = ensureKafkaJars(jarsCacheDir, log);
  const node = await startKafkaNode(cluster, nodeId, libs, log);
  await waitForNode(node);
}

export async function stopKafkaCluster(cluster: KafkaClusterState): Promise<void> {
  for (const node of cluster.nodes) if (pidAlive(node.pid)) process.kill(node.pid, 'SIGTERM');
  for (const node of cluster.nodes) {
    await waitUntil(async () => !pidAlive(node.pid), 60_000, `Kafka node ${node.nodeId} shutdown`).catch(() => {
      if (pidAlive(node.pid)) process.kill(node.pid, 'SIGKILL');
    });
  }
}
