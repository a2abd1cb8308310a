// A supervised process tree for `evalbox dev`: each child is an `evalbox <command>` process with
// its output in a log file of its own. A child that exits while the tree is running is reported
// and started again after a short backoff; stop() ends them in the order given, each with SIGTERM
// and, past its grace period, SIGKILL.
import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const EVALBOX_BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../bin/evalbox.js');

export interface ChildSpec {
  name: string;
  /** Arguments of `evalbox`, e.g. ['relay', '--admin-port', '9465']. */
  args: string[];
  env: Record<string, string | undefined>;
  /** The admin port serving /readyz and /metrics, when the child has one. */
  adminPort?: number;
}

export interface ChildState {
  spec: ChildSpec;
  pid: number | undefined;
  state: 'starting' | 'running' | 'restarting' | 'stopping' | 'stopped';
  restarts: number;
  startedAt: number;
  logFile: string;
  lastExit?: { code: number | null; signal: NodeJS.Signals | null };
}

export interface SupervisorEvents {
  started: [ChildState];
  died: [ChildState];
}

export class Supervisor extends EventEmitter<SupervisorEvents> {
  private readonly children = new Map<string, { state: ChildState; process?: ChildProcess; timer?: NodeJS.Timeout }>();
  private stopping = false;

  constructor(private readonly logDir: string) {
    super();
    fs.mkdirSync(logDir, { recursive: true });
    // A normal exit of this process, even an unexpected one, leaves no child behind.
    process.once('exit', () => {
      for (const child of this.children.values()) child.process?.kill('SIGKILL');
    });
  }

  start(spec: ChildSpec): ChildState {
    const state: ChildState = {
      spec,
      pid: undefined,
      state: 'starting',
      restarts: 0,
      startedAt: Date.now(),
      logFile: path.join(this.logDir, `${spec.name}.log`),
    };
    this.children.set(spec.name, { state });
    this.spawnChild(spec.name);
    return state;
  }

  list(): ChildState[] {
    return [...this.children.values()].map((c) => c.state);
  }

  get(name: string): ChildState | undefined {
    return this.children.get(name)?.state;
  }

  private spawnChild(name: string): void {
    const entry = this.children.get(name);
    if (!entry || this.stopping) return;
    const { state } = entry;
    const log = fs.openSync(state.logFile, 'a');
    fs.writeSync(log, `--- ${new Date().toISOString()} evalbox ${state.spec.args.join(' ')}\n`);
    const child = spawn(process.execPath, [EVALBOX_BIN, ...state.spec.args], {
      env: state.spec.env,
      stdio: ['ignore', log, log],
      // Its own process group: a Ctrl-C reaches this process only, which stops the children in order.
      detached: true,
    });
    fs.closeSync(log);
    entry.process = child;
    state.pid = child.pid;
    state.state = 'running';
    state.startedAt = Date.now();
    this.emit('started', state);
    child.once('exit', (code, signal) => {
      state.lastExit = { code, signal };
      state.pid = undefined;
      entry.process = undefined;
      if (this.stopping) {
        state.state = 'stopped';
        return;
      }
      state.state = 'restarting';
      this.emit('died', state);
      // Back off a little more each time, so a child that cannot start does not spin.
      const delay = Math.min(1_000 * 2 ** Math.min(state.restarts, 4), 15_000);
      state.restarts += 1;
      entry.timer = setTimeout(() => this.spawnChild(name), delay);
    });
  }

  /** Stops every child, in the order given (names not listed last), each within graceMs. */
  async stop(order: string[], graceMs = 30_000): Promise<void> {
    this.stopping = true;
    const names = [...order.filter((n) => this.children.has(n)), ...[...this.children.keys()].filter((n) => !order.includes(n))];
    for (const name of names) {
      const entry = this.children.get(name);
      if (!entry) continue;
      clearTimeout(entry.timer);
      const child = entry.process;
      if (!child || child.exitCode !== null || child.signalCode !== null) {
        entry.state.state = 'stopped';
        continue;
      }
      entry.state.state = 'stopping';
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(killer);
      entry.state.state = 'stopped';
    }
  }
}
