// A real single-node Apache Kafka broker in KRaft mode: the official jars resolved from Maven
// Central with mvn into the cache, the log directory formatted once, kafka.Kafka run by the JDK.
import fs from 'node:fs';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { spawnSync } from 'node:child_process';
import { ConfigError } from '../errors.js';
import { aptInstall, commandExists, run, freePort, waitUntil, spawnDetached, canConnect, pidAlive } from './process.js';

export const KAFKA_VERSION = '4.1.1';
const scriptsDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../scripts/kafka');

export interface KafkaState {
  port: number;
  controllerPort: number;
  dir: string;
  logFile: string;
  pid: number;
  brokers: string;
}

function javaMajorVersion(): number | undefined {
  if (!commandExists('java')) return undefined;
  const result = spawnSync('java', ['-version'], { encoding: 'utf8' });
  const match = /version "(\d+)(?:\.(\d+))?/.exec(`${result.stderr}${result.stdout}`);
  if (!match) return undefined;
  const major = Number(match[1]);
  return major === 1 ? Number(match[2]) : major;
}

export function ensureJava(log: (line: string) => void): void {
  const major = javaMajorVersion();
  if (major !== undefined && major >= 17) return;
  aptInstall(['openjdk-17-jre-headless'], log);
  if ((javaMajorVersion() ?? 0) < 17) throw new ConfigError('Kafka 4 needs Java 17 or newer; `java -version` reports an older one');
}

/** Resolves the broker's jars once into the cache; a marker file says the copy is complete. */
export function ensureKafkaJars(cacheDir: string, log: (line: string) => void): string {
  const libs = path.join(cacheDir, 'kafka', KAFKA_VERSION, 'libs');
  const marker = path.join(libs, '.complete');
  if (fs.existsSync(marker)) return libs;
  if (!commandExists('mvn')) aptInstall(['maven'], log);
  log(`resolving Apache Kafka ${KAFKA_VERSION} jars from Maven Central into ${libs}`);
  fs.rmSync(libs, { recursive: true, force: true });
  run('mvn', ['-q', '-B', '-f', path.join(scriptsDir, 'pom.xml'), 'dependency:copy-dependencies', '-DincludeScope=runtime', `-DoutputDirectory=${libs}`], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  fs.writeFileSync(marker, new Date().toISOString());
  return libs;
}

/**
 * Where clients are sent after bootstrap. A test that puts its own TCP proxy in front of a private
 * broker advertises the proxy's port to clients, and keeps the broker's own traffic (transaction
 * markers) on an internal listener that the proxy does not see.
 */
export interface KafkaListenerOptions {
  advertisedPort?: number;
}

function serverProperties(dir: string, port: number, controllerPort: number, internalPort: number | undefined, options: KafkaListenerOptions): string {
  const internal = internalPort === undefined ? [] : [`INTERNAL://127.0.0.1:${internalPort}`];
  return [
    'process.roles=broker,controller',
    'node.id=1',
    `controller.quorum.voters=1@127.0.0.1:${controllerPort}`,
    `listeners=${[`PLAINTEXT://127.0.0.1:${port}`, ...internal, `CONTROLLER://127.0.0.1:${controllerPort}`].join(',')}`,
    `advertised.listeners=${[`PLAINTEXT://127.0.0.1:${options.advertisedPort ?? port}`, ...internal].join(',')}`,
    'controller.listener.names=CONTROLLER',
    `inter.broker.listener.name=${internal.length ? 'INTERNAL' : 'PLAINTEXT'}`,
    `listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT${internal.length ? ',INTERNAL:PLAINTEXT' : ''}`,
    `log.dirs=${path.join(dir, 'data')}`,
    'num.partitions=3',
    'auto.create.topics.enable=true',
    'offsets.topic.replication.factor=1',
    'offsets.topic.num.partitions=10',
    'transaction.state.log.replication.factor=1',
    'transaction.state.log.min.isr=1',
    'share.coordinator.state.topic.replication.factor=1',
    'share.coordinator.state.topic.min.isr=1',
    // a single local broker: let a new consumer group start at once
    'group.initial.rebalance.delay.ms=0',
    'message.max.bytes=1048588',
    '',
  ].join('\n');
}

export const javaArgs = (libs: string) => [
  '-Xms256m',
  '-Xmx512m',
  '-XX:+UseG1GC',
  `-Dlog4j2.configurationFile=${path.join(scriptsDir, 'log4j2.properties')}`,
  '-cp',
  `${libs}/*`,
];

/**
 * Starts a broker whose data lives under `cacheDir`. `jarsCacheDir` (default: the same) lets a
 * second, private broker (used by tests that stop a broker mid-run) share the resolved jars.
 */
export async function startKafka(
  cacheDir: string,
  previous: KafkaState | undefined,
  log: (line: string) => void,
  jarsCacheDir: string = cacheDir,
  listenerOptions: KafkaListenerOptions = {},
): Promise<KafkaState> {
  ensureJava(log);
  const libs = ensureKafkaJars(jarsCacheDir, log);
  const dir = path.join(cacheDir, 'kafka', 'broker');
  fs.mkdirSync(dir, { recursive: true });
  const port = await freePort(previous?.port);
  let controllerPort = await freePort(previous?.controllerPort);
  if (controllerPort === port) controllerPort = await freePort();
  const internalPort = listenerOptions.advertisedPort === undefined ? undefined : await freePort();
  const config = path.join(dir, 'server.properties');
  fs.writeFileSync(config, serverProperties(dir, port, controllerPort, internalPort, listenerOptions));
  if (!fs.existsSync(path.join(dir, 'data', 'meta.properties'))) {
    log(`formatting the KRaft log directory ${path.join(dir, 'data')}`);
    run('java', [...javaArgs(libs), 'kafka.tools.StorageTool', 'format', `--cluster-id=${clusterId()}`, '-c', config], { stdio: ['ignore', 'pipe', 'pipe'] });
  }
  const logFile = path.join(dir, 'server.log');
  const logFd = fs.openSync(logFile, 'a');
  log(`starting Kafka ${KAFKA_VERSION} on 127.0.0.1:${port} (log: ${logFile})`);
  const pid = spawnDetached('java', [...javaArgs(libs), 'kafka.Kafka', config], { cwd: dir, logFd });
  fs.closeSync(logFd);
  await waitUntil(
    async () => {
      if (!pidAlive(pid)) throw new ConfigError(`the Kafka broker exited during start-up; see ${logFile}`);
      return canConnect('127.0.0.1', port);
    },
    90_000,
    'Kafka',
  );
  return { port, controllerPort, dir, logFile, pid, brokers: `127.0.0.1:${port}` };
}

/** A Kafka cluster id: 16 random bytes, URL-safe base64 without padding (it may start with '-': pass it as --cluster-id=ID). */
export function clusterId(): string {
  return Buffer.from(randomUUID().replace(/-/g, ''), 'hex').toString('base64url');
}

export async function stopKafka(state: KafkaState): Promise<void> {
  if (!pidAlive(state.pid)) return;
  process.kill(state.pid, 'SIGTERM');
  await waitUntil(async () => !pidAlive(state.pid), 60_000, 'Kafka shutdown').catch(() => process.kill(state.pid, 'SIGKILL'));
}
