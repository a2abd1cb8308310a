// The evalbox CLI: one subcommand per process or tool. Exit codes: 0 ok, 1 failed, 2 bad usage.
// A stack trace is printed only when DEBUG is set.
import { UsageError, type Command } from './args.js';
import { keysCommand } from './keys.js';
import { migrateCommand } from './migrate.js';
import { stackCommand } from './stack.js';

/** Long-running processes are loaded only when asked for, so tools start fast. */
function lazy(name: string, summary: string, load: () => Promise<Command>): Command {
  return {
    name,
    summary,
    help: '',
    run: async (argv) => (await load()).run(argv),
  };
}

export const commands: Command[] = [
  stackCommand,
  migrateCommand,
  keysCommand,
  lazy('api', 'run the ingest REST API', async () => (await import('../api/command.js')).apiCommand),
  lazy('relay', 'run the outbox relay daemon', async () => (await import('../../outbox-relay/command.js')).relayCommand),
  lazy('outbox', 'inspect the outbox: backlog, oldest, throughput, key, parked, redrive', async () => (await import('./outbox.js')).outboxCommand),
  lazy('scorer', 'run the scoring consumer group', async () => (await import('../../consumers/command.js')).scorerCommand),
  lazy('dlt', 'list, show and redrive dead letters', async () => (await import('./dlt.js')).dltCommand),
  lazy('console', 'run the web console: pipeline, evaluations, quality, dead letters', async () => (await import('../console/command.js')).consoleCommand),
  lazy('dev', 'run the whole pipeline locally with demo traffic and a live view', async () => (await import('../dev/command.js')).devCommand),
  lazy(
    'fake-judge',
    'run a scripted OpenAI-compatible judge server (tests, demo, benchmarks)',
    async () => (await import('../fake-judge/command.js')).fakeJudgeCommand,
  ),
];

function usage(): string {
  const width = Math.max(...commands.map((c) => c.name.length));
  return `Usage: evalbox <command> [options]    (evalbox <command> --help for details)

Commands:
${commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`).join('\n')}

Configuration comes from EVALBOX_* environment variables, DATABASE_URL and KAFKA_BROKERS;
flags override them.`;
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(`${usage()}\n`);
    return name ? 0 : 2;
  }
  const command = commands.find((c) => c.name === name);
  if (!command) {
    process.stderr.write(`evalbox: unknown command "${name}"\n\n${usage()}\n`);
    return 2;
  }
  try {
    return await command.run(rest);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    process.stderr.write(`evalbox ${name}: ${message}\n`);
    if (process.env.DEBUG && error instanceof Error) process.stderr.write(`${error.stack}\n`);
    if (error instanceof UsageError) return 2;
    return 1;
  }
}
