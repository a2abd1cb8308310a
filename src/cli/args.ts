// Shared CLI plumbing: parseArgs with --help, usage errors (exit 2), tables for people and
// --json for scripts.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { ConfigError } from '../errors.js';

export class UsageError extends ConfigError {}

export interface Command {
  name: string;
  summary: string;
  /** Full help text: usage, flags, environment variables. */
  help: string;
  run(argv: string[]): Promise<number>;
}

export type Options = NonNullable<ParseArgsConfig['options']>;

/** Flags every command that talks to the stack accepts. */
export const CONNECTION_OPTIONS = {
  'database-url': { type: 'string' },
  'kafka-brokers': { type: 'string' },
  'log-level': { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies Options;

export const CONNECTION_HELP = `
Connection (flags override the environment):
  --database-url URL     Postgres (env DATABASE_URL)
  --kafka-brokers LIST   Kafka bootstrap servers (env KAFKA_BROKERS)
  --log-level LEVEL      pino level (env EVALBOX_LOG_LEVEL, default info)
  --json                 machine-readable output
  -h, --help             this help`;

export function parse<T extends Options>(argv: string[], options: T, allowPositionals = false) {
  try {
    return parseArgs({ args: argv, options, allowPositionals, strict: true });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

/** Prints rows as an aligned table. */
export function printTable(rows: Record<string, unknown>[], columns?: string[]): void {
  if (rows.length === 0) {
    process.stdout.write('(no rows)\n');
    return;
  }
  const headers = columns ?? Object.keys(rows[0] as object);
  const cell = (value: unknown): string => {
    if (value === null || value === undefined) return '';
    if (value instanceof Date) return value.toISOString();
    if (typeof value === 'string') return value;
    if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return value.toString();
    return JSON.stringify(value) ?? '';
  };
  const cells = rows.map((row) => headers.map((h) => cell(row[h])));
  const widths = headers.map((h, i) => Math.max(h.length, ...cells.map((r) => (r[i] ?? '').length)));
  const line = (values: string[]) =>
    values
      .map((v, i) => v.padEnd(widths[i] ?? 0))
      .join('  ')
      .trimEnd();
  process.stdout.write(`${line(headers)}\n${line(widths.map((w) => '-'.repeat(w)))}\n`);
  for (const r of cells) process.stdout.write(`${line(r)}\n`);
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}
