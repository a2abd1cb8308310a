// Small process helpers for the local stack: run a command, probe a TCP port, find a free one.
import { spawn, spawnSync, type SpawnSyncOptions } from 'node:child_process';
import net from 'node:net';
import { ConfigError } from '../errors.js';

export function run(command: string, args: string[], options: SpawnSyncOptions = {}): string {
  const result = spawnSync(command, args, { encoding: 'utf8', ...options });
  if (result.error) throw new ConfigError(`${command} could not be started: ${result.error.message}`, result.error);
  if (result.status !== 0) {
    const output = `${String(result.stdout ?? '')}${String(result.stderr ?? '')}`.trim().split('\n').slice(-15).join('\n');
    throw new ConfigError(`${command} ${args.join(' ')} failed with exit code ${result.status}:\n${output}`);
  }
  return String(result.stdout ?? '');
}

export function commandExists(command: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${command}`], { encoding: 'utf8' }).status === 0;
}

export const isRoot = (): boolean => typeof process.getuid === 'function' && process.getuid() === 0;

export function aptInstall(packages: string[], log: (line: string) => void): void {
  if (!isRoot()) throw new ConfigError(`missing ${packages.join(' ')}: install them (apt-get install ${packages.join(' ')})`);
  log(`installing ${packages.join(' ')} with apt-get`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  run('apt-get', ['update', '-qq'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  run('apt-get', ['install', '-y', '-qq', ...packages], { env, stdio: ['ignore', 'pipe', 'pipe'] });
}

export function canConnect(host: string, port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    const finish = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => finish(false));
    socket.once('connect', () => finish(true));
    socket.once('error', () => finish(false));
  });
}

export function freePort(preferred?: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.once('error', (error: NodeJS.ErrnoException) => {
      if (preferred !== undefined && error.code === 'EADDRINUSE') freePort().then(resolve, reject);
      else reject(error);
    });
    server.listen({ host: '127.0.0.1', port: preferred ?? 0 }, () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

export function pidAlive(pid: number | undefined): boolean {
  if (!pid) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export async function waitUntil(check: () => Promise<boolean>, timeoutMs: number, what: string, intervalMs = 200): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
  throw new ConfigError(`${what} did not become ready within ${Math.round(timeoutMs / 1000)} s`);
}

/** Starts a long-running server detached from this process, its output appended to logFile. */
export function spawnDetached(command: string, args: string[], options: { cwd?: string; logFd: number; env?: NodeJS.ProcessEnv }): number {
  const child = spawn(command, args, { cwd: options.cwd, env: options.env ?? process.env, detached: true, stdio: ['ignore', options.logFd, options.logFd] });
  child.unref();
  if (!child.pid) throw new ConfigError(`${command} could not be started`);
  return child.pid;
}
