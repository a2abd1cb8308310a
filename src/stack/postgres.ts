// A private Postgres cluster for local use and CI: Debian's binaries, initdb + pg_ctl in a data
// directory of the project's cache, on a loopback port. As root it runs as the postgres user,
// whose data directory must then live outside root's home.
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { ConfigError } from '../errors.js';
import { aptInstall, isRoot, run, freePort, waitUntil } from './process.js';

export interface PostgresState {
  port: number;
  dataDir: string;
  logFile: string;
  url: string;
}

export function findPostgresBinDir(): string | undefined {
  const root = '/usr/lib/postgresql';
  if (!fs.existsSync(root)) return undefined;
  const versions = fs
    .readdirSync(root)
    .filter((v) => Number(v) >= 15 && fs.existsSync(path.join(root, v, 'bin', 'initdb')))
    .sort((a, b) => Number(b) - Number(a));
  return versions[0] ? path.join(root, versions[0], 'bin') : undefined;
}

function ensurePostgresBinaries(log: (line: string) => void): string {
  let binDir = findPostgresBinDir();
  if (!binDir) {
    aptInstall(['postgresql'], log);
    binDir = findPostgresBinDir();
  }
  if (!binDir) throw new ConfigError('PostgreSQL >= 15 binaries were not found under /usr/lib/postgresql after installing');
  return binDir;
}

/** Runs a Postgres binary as the cluster owner (the postgres user when we are root). */
function asOwner(binary: string, args: string[]): string {
  if (isRoot()) return run('runuser', ['-u', 'postgres', '--', binary, ...args], { cwd: '/' });
  return run(binary, args);
}

export function postgresDataDir(cacheDir: string): string {
  return isRoot() ? path.join('/var/tmp/evalbox', Buffer.from(cacheDir).toString('hex').slice(-24), 'postgres') : path.join(cacheDir, 'postgres');
}

export async function isPostgresReachable(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2000 });
  try {
    await client.connect();
    await client.query('SELECT 1');
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => {});
  }
}

export async function startPostgres(cacheDir: string, previous: PostgresState | undefined, log: (line: string) => void): Promise<PostgresState> {
  const binDir = ensurePostgresBinaries(log);
  const dataDir = postgresDataDir(cacheDir);
  const logFile = path.join(path.dirname(dataDir), 'postgres.log');
  fs.mkdirSync(path.dirname(dataDir), { recursive: true });
  if (isRoot()) run('chown', ['postgres:postgres', path.dirname(dataDir)]);

  if (!fs.existsSync(path.join(dataDir, 'PG_VERSION'))) {
    log(`initdb ${dataDir}`);
    asOwner(path.join(binDir, 'initdb'), ['-D', dataDir, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--no-instructions']);
  }
  const port = await freePort(previous?.port);
  const options = [
    `-p ${port}`,
    `-k ${dataDir}`,
    '-c listen_addresses=127.0.0.1',
    '-c max_connections=300',
    '-c shared_buffers=256MB',
    '-c max_wal_size=2GB',
  ].join(' ');
  log(`starting Postgres on 127.0.0.1:${port} (log: ${logFile})`);
  asOwner(path.join(binDir, 'pg_ctl'), ['-D', dataDir, '-l', logFile, '-o', options, '-w', '-t', '60', 'start']);
  const url = `postgres://postgres@127.0.0.1:${port}/evalbox`;
  const admin = `postgres://postgres@127.0.0.1:${port}/postgres`;
  await waitUntil(() => isPostgresReachable(admin), 30_000, 'Postgres');
  const client = new pg.Client({ connectionString: admin });
  await client.connect();
  try {
    const exists = await client.query(`SELECT 1 FROM pg_database WHERE datname = 'evalbox'`);
    if (exists.rowCount === 0) await client.query('CREATE DATABASE evalbox');
  } finally {
    await client.end();
  }
  return { port, dataDir, logFile, url };
}

export function stopPostgres(state: PostgresState): void {
  const binDir = findPostgresBinDir();
  if (!binDir || !fs.existsSync(path.join(state.dataDir, 'postmaster.pid'))) return;
  asOwner(path.join(binDir, 'pg_ctl'), ['-D', state.dataDir, '-m', 'fast', '-w', 'stop']);
}
