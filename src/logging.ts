// pino JSON logs. Prompt and response text are never logged: callers bind ids, not content.
import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(options: { level?: string; name?: string } = {}): Logger {
  return pino(
    {
      name: options.name ?? 'evalbox',
      level: options.level ?? process.env.EVALBOX_LOG_LEVEL ?? 'info',
      redact: { paths: ['prompt', 'response', 'context', 'reference', '*.prompt', '*.response', '*.context', '*.reference'], censor: '[redacted]' },
    },
    // Logs go to stderr so that CLI output on stdout stays machine-readable.
    pino.destination(2),
  );
}

/** A logger that writes nothing, for tests that do not assert on logs. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
