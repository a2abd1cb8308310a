// pino JSON logs. Prompt, response, context and reference text are never logged: callers bind ids
// (evaluation, event, request, trace), not content, and those four field names are redacted
// wherever they appear. `logContent` (EVALBOX_LOG_CONTENT=on) lifts the redaction for debugging.
import { pino, type Logger } from 'pino';

export type { Logger };

/** Field names whose values are content (what a user sent or a model answered). */
const CONTENT_FIELDS = ['prompt', 'response', 'context', 'reference'];

export function createLogger(options: { level?: string; name?: string; logContent?: boolean } = {}): Logger {
  return pino(
    {
      name: options.name ?? 'evalbox',
      level: options.level ?? process.env.EVALBOX_LOG_LEVEL ?? 'info',
      ...(options.logContent ? {} : { redact: { paths: [...CONTENT_FIELDS, ...CONTENT_FIELDS.map((f) => `*.${f}`)], censor: '[redacted]' } }),
    },
    // Logs go to stderr so that CLI output on stdout stays machine-readable.
    pino.destination(2),
  );
}

/** A logger that writes nothing, for tests that do not assert on logs. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
