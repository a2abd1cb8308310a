// The chaos run's process tree: every evalbox process a child of the run, its output in a log
// file, restarted by the run after a fault, and signalled (kill -9, SIGSTOP/SIGCONT, SIGTERM)
// at chosen moments.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

export interface ExitRecord {
  name: string;
  code: number | null;
  signal: NodeJS.Signals | null;
  expected: boolean;
  at: number;
}

export class EvalboxProcess {
  child: ChildProcess | undefined;
  private exitWaiters: ((record: ExitRecord) => void)[] = [];
  expectExit = false;
  starts = 0;
  /** Restart after an exit nobody asked for (cleared when the run stops its processes). */
  supervised = true;

  constructor(
    readonly name: string,
    private readonly args: string[],
    private readonly env: NodeJS.ProcessEnv,
    private readonly logDir: string,
    private readonly exits: ExitRecord[],
    /** Its admin port (/healthz), when it has one. */
    readonly adminPort?: number,
  ) {}

  /** Resolves once the process answers /healthz on its admin port (a booting Node process
   *  dies of a SIGTERM before its handler is installed; the chaos run signals ready ones). */
  async waitReady(timeoutMs = 90_000): Promise<boolean> {
    if (this.adminPort === undefined) return true;
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      try {
        const response = await fetch(`http://127.0.0.1:${this.adminPort}/healthz`);
        if (response.ok) return true;
      } catch {
        // not listening yet
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    return false;
  }

  get pid(): number | undefined {
    return this.child?.exitCode === null && this.child.signalCode === null ? this.child.pid : undefined;
  }

  start(): void {
    const log = fs.openSync(path.join(this.logDir, `${this.name}.log`), 'a');
    this.starts++;
    this.expectExit = false;
    const child = spawn(process.execPath, ['bin/evalbox.js', ...this.args], { env: this.env, stdio: ['ignore', log, log] });
    fs.closeSync(log);
    this.child = child;
    child.once('exit', (code, signal) => {
      const record = { name: this.name, code, signal, expected: this.expectExit, at: Date.now() };
      this.exits.push(record);
      for (const waiter of this.exitWaiters.splice(0)) waiter(record);
      // Like a Kubernetes restart policy: a process that died on its own is started again.
      if (!record.expected && this.supervised) setTimeout(() => this.supervised && !this.pid && this.start(), 2000);
    });
  }

  signal(signal: NodeJS.Signals): void {
    const pid = this.pid;
    if (pid) process.kill(pid, signal);
  }

  /** Resolves with the exit record, or undefined after timeoutMs. */
  waitExit(timeoutMs: number): Promise<ExitRecord | undefined> {
    if (!this.pid) return Promise.resolve(this.exits.filter((e) => e.name === this.name).at(-1));
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(undefined), timeoutMs);
      this.exitWaiters.push((record) => {
        clearTimeout(timer);
        resolve(record);
      });
    });
  }

  async kill9(final = false): Promise<void> {
    if (final) this.supervised = false;
    this.expectExit = true;
    this.signal('SIGKILL');
    await this.waitExit(10_000);
  }

  async stop(timeoutMs = 30_000, final = false): Promise<ExitRecord | undefined> {
    if (final) this.supervised = false;
    if (!this.pid) return undefined;
    this.expectExit = true;
    this.signal('SIGCONT');
    this.signal('SIGTERM');
    const record = await this.waitExit(timeoutMs);
    if (!record) await this.kill9();
    return record;
  }
}

/** Runs `evalbox ARGS` to completion and returns its standard output. */
export function runEvalbox(args: string[], env: NodeJS.ProcessEnv): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['bin/evalbox.js', ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.once('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`evalbox ${args.join(' ')} exited ${code}: ${err}`))));
  });
}
