// Scores one evaluation.created event with exactly-once effects: the existing score rows are
// checked first (a dimension already COMPLETED with the same scorer version is never scored or
// paid for again), every write is an upsert on (evaluation_id, dimension), and the scores, the
// evaluation's terminal status and the evaluation.scored outbox event commit in ONE transaction
// that starts by locking the evaluation row (so xid order equals commit order for its events).
// Poison and exhausted work goes to the DLT before anything is committed.
import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { Topics } from '../src/config.js';
import type { EvaluationStatus } from '../src/db/types.js';
import type { DimensionRegistry } from '../src/dimensions.js';
import { classifyPgError, coerceError, EvalboxError, parsePermanentCode, PermanentError, RetryableError } from '../src/errors.js';
import { EVENT_TYPES } from '../src/events.js';
import { classifyKafkaError, type Producer } from '../src/kafka.js';
import type { Logger } from '../src/logging.js';
import { withRetry, type BackoffPolicy } from '../src/retry.js';
import { evaluationCreatedSchema, type EvaluationCreatedData } from '../src/schemas/events.js';
import { createAjv } from '../src/schemas/validator.js';
import { paidUsageOf } from './judge/client.js';
import type { ConsumedMessage } from './runtime.js';
import { baseRow, errorRow } from './score-rows.js';
import { contextFromTraceparent, inSpan, SpanKind, traceIdOf, traceparentOf, type Span } from '../src/tracing.js';
import type { LoadedEvaluation, ScoreRowValues, ScoreStore } from './score-store.js';
import { isTerminalEvaluation, keepsStoredResult } from './terminal-status.js';

export interface ScoringInputs {
  prompt: string;
  response: string;
  context: string | string[] | null;
  reference: string | null;
  metadata: Record<string, unknown>;
}

/** The columns of one score row (evaluation_id and attempts are added by the scorer). */
export type ScoreRow = ScoreRowValues;

/** One dimension's scorer. Throws RetryableError (may retry) or PermanentError (will not). */
export interface Scorer {
  dimension: string;
  name: string;
  version: string;
  score(inputs: ScoringInputs, options: { signal: AbortSignal; evaluationId: string; applicationId: string }): Promise<ScoreRow>;
}

export interface ScorerEvents {
  'scorer:evaluationScored': [{ evaluationId: string; status: EvaluationStatus; seconds: number }];
  'scorer:dimensionScored': [{ dimension: string; status: string; seconds: number; reused: boolean }];
  'scorer:retry': [{ dimension: string; code: string; attempt: number; delayMs: number; pressure: boolean }];
  'scorer:deadLettered': [{ reason: string; dimension: string | null }];
  'scorer:redelivery': [{ evaluationId: string }];
}

export interface ScorerContext {
  /** Batched reads and writes of evaluations and scores (see score-store.ts). */
  store: ScoreStore;
  /** Idempotent producer for DLT records. */
  producer: Producer;
  topics: Topics;
  groupId: string;
  dimensions: DimensionRegistry;
  scorers: Map<string, Scorer>;
  retry: BackoffPolicy;
  logger: Logger;
  events: EventEmitter<ScorerEvents>;
  /** Provider back-pressure (429, open circuit): waits that do not use up the retry budget. */
  isPressure?: (error: unknown) => boolean;
}

/** How often a message waiting for a replica that has its scorer looks again. */
const SCORER_ELSEWHERE_RETRY_MS = 5_000;

const ajv = createAjv();
const CANONICAL_UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const validateCreated = ajv.compile(evaluationCreatedSchema);

interface Failure {
  dimension: string | null;
  error: EvalboxError;
  attempts: number;
}

/**
 * Handles one message; resolves once its effects (and any DLT record) are durable. Throws a
 * RetryableError for an infrastructure fault (the runtime tries again later) and a PermanentError
 * for anything else (the runtime dead-letters the message with `deadLetterMessage`).
 */
export async function handleEvaluationMessage(ctx: ScorerContext, message: ConsumedMessage, signal: AbortSignal): Promise<void> {
  // The evaluation's span continues the trace the event carries (its traceparent header).
  const traceparent = message.headers.traceparent?.toString();
  await inSpan('evaluation score', { kind: SpanKind.CONSUMER, parent: contextFromTraceparent(traceparent) }, async (span) => {
    if (span.isRecording())
      span.setAttributes({ 'messaging.system': 'kafka', 'messaging.destination.name': message.topic, 'messaging.kafka.offset': message.offset });
    const logger = messageLogger(ctx.logger, message, traceIdOf(traceparentOf(span)));
    try {
      await scoreMessage({ ...ctx, logger }, message, signal, span);
    } catch (thrown) {
      // Database errors by SQLSTATE; anything unforeseen (a bug, an odd value) is permanent.
      throw classifyPgError(thrown);
    }
  });
}

/** A logger bound to one message: where it is, its event id, and its trace. */
function messageLogger(logger: Logger, message: ConsumedMessage, traceId: string | undefined): Logger {
  return logger.child({
    topic: message.topic,
    partition: message.partition,
    offset: message.offset,
    eventId: message.headers.ce_id?.toString(),
    ...(traceId ? { traceId } : {}),
  });
}

async function scoreMessage(ctx: ScorerContext, message: ConsumedMessage, signal: AbortSignal, span: Span): Promise<void> {
  const started = Date.now();
  const type = message.headers.ce_type?.toString();
  if (type !== undefined && type !== EVENT_TYPES.evaluationCreated) return; // not ours: other event types share no contract with us
  let data: EvaluationCreatedData;
  try {
    const parsed: unknown = JSON.parse(message.value?.toString('utf8') ?? '');
    if (!validateCreated(parsed)) throw new PermanentError(`schema: ${ajv.errorsText(validateCreated.errors)}`, { code: 'INVALID_EVENT' });
    data = parsed as EvaluationCreatedData;
  } catch (error) {
    const reason = error instanceof EvalboxError ? error : new PermanentError(`not JSON: ${coerceError(error).message}`, { code: 'INVALID_EVENT' });
    await deadLetter(ctx, message, [{ dimension: null, error: reason, attempts: 1 }]);
    return;
  }

  // ajv's uuid format also accepts `urn:uuid:…`, which the uuid column does not.
  if (!CANONICAL_UUID.test(data.evaluationId)) {
    await deadLetter(ctx, message, [
      {
        dimension: null,
        error: new PermanentError(`evaluationId "${data.evaluationId.slice(0, 100)}" is not a canonical UUID`, { code: 'INVALID_EVENT' }),
        attempts: 1,
      },
    ]);
    return;
  }
  if (span.isRecording()) span.setAttribute('evalbox.evaluation_id', data.evaluationId);
  ctx = { ...ctx, logger: ctx.logger.child({ evaluationId: data.evaluationId }) };
  let loaded: LoadedEvaluation | undefined;
  try {
    loaded = await ctx.store.load(data.evaluationId);
  } catch (thrown) {
    const error = classifyPgError(thrown);
    if (error.retryable) throw error;
    await deadLetter(ctx, message, [{ dimension: null, error, attempts: 1 }]);
    return;
  }
  if (!loaded) {
    // Deleted through the API before it was scored: nothing to score and nothing to dead-letter
    // (a DLT record would keep the text the client asked to delete).
    if (await withDb(async () => (await ctx.store.wasDeleted?.(data.evaluationId)) ?? false)) {
      ctx.logger.debug({ evaluationId: data.evaluationId }, 'evaluation deleted before it was scored');
      return;
    }
    await deadLetter(ctx, message, [
      { dimension: null, error: new PermanentError(`evaluation ${data.evaluationId} does not exist`, { code: 'UNKNOWN_EVALUATION' }), attempts: 1 },
    ]);
    return;
  }
  const { evaluation, scores: existing } = loaded;
  // A redrive from the DLT asks for the ERROR dimensions to be tried again, once per redrive (its
  // id is the DLT record it came from); any other delivery of a terminal evaluation, and a
  // redrive already applied, is a redelivery and changes nothing.
  const redriveId = message.headers.dlt_redriven_from?.toString();
  const redriven =
    redriveId !== undefined && [...existing.values()].some((row) => row.status === 'ERROR') && !(await withDb(() => ctx.store.redriveApplied(redriveId)));
  const terminal = isTerminalEvaluation(evaluation, existing);
  if (!redriven && terminal) {
    ctx.events.emit('scorer:redelivery', { evaluationId: evaluation.id });
    return; // already terminal: a redelivery changes nothing and publishes nothing
  }

  // A dimension this replica has no scorer for, but a live replica offers (it has the judge,
  // say): not an ERROR. The message waits, its key only, until a replica that can score it owns
  // the partition, or no running scorer offers the dimension any more (then it is NO_SCORER).
  const missing = evaluation.dimensions.filter((d) => !ctx.scorers.has(d) && !keepsStoredResult(existing.get(d), undefined, redriven && terminal));
  if (missing.length > 0) {
    const elsewhere = await withDb(() => ctx.store.offeredByLiveScorers(missing));
    if (elsewhere.length > 0)
      throw new RetryableError(`no scorer here for ${elsewhere.join(', ')}, which another running scorer offers`, {
        code: 'SCORER_ELSEWHERE',
        retryAfterMs: SCORER_ELSEWHERE_RETRY_MS,
      });
  }

  const inputs: ScoringInputs = {
    prompt: evaluation.prompt,
    response: evaluation.response,
    context: evaluation.context as string | string[] | null,
    reference: evaluation.reference,
    metadata: evaluation.metadata as Record<string, unknown>,
  };
  const failures: Failure[] = [];
  const rows = await Promise.all(
    evaluation.dimensions.map(async (dimension): Promise<{ row: ScoreRow; attempts: number } | undefined> => {
      const scorer = ctx.scorers.get(dimension);
      const previous = existing.get(dimension);
      // A redrive retries only the ERROR dimensions: a result of an older scorer version stays as
      // it is (re-scoring it is the next event's business, not a redrive's).
      if (previous && keepsStoredResult(previous, scorer?.version, redriven && terminal)) {
        ctx.events.emit('scorer:dimensionScored', { dimension, status: previous.status, seconds: 0, reused: true });
        return undefined; // already done with this version: never scored (or paid for) twice
      }
      const definition = ctx.dimensions.get(dimension);
      if (!scorer || !definition) {
        const error = new PermanentError(`no scorer is configured for dimension "${dimension}"`, { code: 'NO_SCORER' });
        failures.push({ dimension, error, attempts: 1 });
        return {
          row: errorRow(
            dimension,
            definition?.scorerKind === 'LLM_JUDGE' ? 'LLM_JUDGE' : 'HEURISTIC',
            definition?.scorerName ?? 'none',
            definition?.scorerVersion ?? '0',
            error,
          ),
          attempts: 1,
        };
      }
      if (definition.samplingRate < 1 && sampleFraction(evaluation.id, dimension) >= definition.samplingRate) {
        return {
          row: {
            ...baseRow(scorer, definition.scorerKind, definition.direction),
            status: 'SKIPPED',
            reasoning: `not sampled (rate ${definition.samplingRate})`,
          },
          attempts: 0,
        };
      }
      const dimensionStarted = Date.now();
      const outcome = await scoreWithRetry(ctx, scorer, inputs, { evaluationId: evaluation.id, applicationId: evaluation.application_id }, signal);
      if ('error' in outcome) {
        failures.push({ dimension, error: outcome.error, attempts: outcome.attempts });
        ctx.events.emit('scorer:dimensionScored', { dimension, status: 'ERROR', seconds: (Date.now() - dimensionStarted) / 1000, reused: false });
        const failed = errorRow(dimension, definition.scorerKind, scorer.name, scorer.version, outcome.error);
        const { inputTokens, outputTokens, costUsd } = outcome.paid;
        const row = inputTokens + outputTokens > 0 ? { ...failed, input_tokens: inputTokens, output_tokens: outputTokens, cost_usd: costUsd } : failed;
        return { row, attempts: outcome.attempts };
      }
      ctx.events.emit('scorer:dimensionScored', { dimension, status: outcome.row.status, seconds: (Date.now() - dimensionStarted) / 1000, reused: false });
      // A scorer may itself conclude ERROR (e.g. a judge answer unparseable twice): that too is a
      // dead letter, so it can be inspected and redriven.
      if (outcome.row.status === 'ERROR')
        failures.push({
          dimension,
          error: new PermanentError(outcome.row.reasoning ?? 'scorer error', { code: parsePermanentCode(outcome.row.error_code) ?? 'SCORER_ERROR' }),
          attempts: outcome.attempts,
        });
      return { row: outcome.row, attempts: outcome.attempts };
    }),
  );

  // The DLT record is acknowledged before anything commits: a crash in between redelivers the
  // event and at worst writes a second DLT record, never loses one.
  // A redrive that fails exactly as before (same code, same scorer version) adds no DLT record:
  // the one it came from still describes the failure.
  const newFailures = redriven
    ? failures.filter((f) => {
        const before = f.dimension ? existing.get(f.dimension) : undefined;
        const now = rows.find((r) => r?.row.dimension === f.dimension)?.row;
        return !(before?.status === 'ERROR' && before.error_code === f.error.code && before.scorer_version === now?.scorer_version);
      })
    : failures;
  if (newFailures.length > 0) await deadLetter(ctx, message, newFailures);
  const written = rows.filter((r): r is { row: ScoreRow; attempts: number } => r !== undefined);
  const item = {
    evaluationId: evaluation.id,
    applicationId: evaluation.application_id,
    rows: written,
    redriven,
    ...(redriven && redriveId ? { redriveId } : {}),
    // The evaluation.scored event continues this evaluation's trace.
    traceparent: traceparentOf(span),
  };
  let status: EvaluationStatus | undefined;
  try {
    status = await ctx.store.commit(item);
  } catch (thrown) {
    const error = classifyPgError(thrown);
    if (error.retryable) throw error;
    // Postgres rejects something in these rows, and will on every retry: the dimensions scored
    // now end ERROR with the reason, on the DLT, so the evaluation is terminal and the partition moves.
    const failed = written.map(({ row, attempts }) => ({
      row: errorRow(row.dimension, row.source, row.scorer_name, row.scorer_version, error),
      attempts,
    }));
    await deadLetter(
      ctx,
      message,
      failed.map(({ row, attempts }) => ({ dimension: row.dimension, error, attempts })),
    );
    status = await ctx.store.commit({ ...item, rows: failed });
  }
  if (status) ctx.events.emit('scorer:evaluationScored', { evaluationId: evaluation.id, status, seconds: (Date.now() - started) / 1000 });
}

/**
 * The last resort for a message whose handling failed for a reason retrying cannot fix and that
 * the scorer did not foresee: a DLT record with the error, so the partition moves on.
 */
export async function deadLetterMessage(ctx: ScorerContext, message: ConsumedMessage, thrown: unknown): Promise<void> {
  ctx = { ...ctx, logger: messageLogger(ctx.logger, message, traceIdOf(message.headers.traceparent?.toString())) };
  const error = thrown instanceof EvalboxError ? thrown : new PermanentError(coerceError(thrown).message, { code: 'HANDLER_FAILED', cause: thrown });
  await deadLetter(ctx, message, [{ dimension: null, error, attempts: 1 }]);
}

async function scoreWithRetry(
  ctx: ScorerContext,
  scorer: Scorer,
  inputs: ScoringInputs,
  { evaluationId, applicationId }: { evaluationId: string; applicationId: string },
  signal: AbortSignal,
): Promise<
  { row: ScoreRow; attempts: number } | { error: EvalboxError; attempts: number; paid: { inputTokens: number; outputTokens: number; costUsd: number | null } }
> {
  const stopping = (cause?: unknown) => new RetryableError('stopping', { code: 'SHUTDOWN', cause });
  if (signal.aborted) throw stopping();
  const isPressure = (error: unknown) => ctx.isPressure?.(error) ?? false;
  // Every paid call is recorded: tokens and cost of failed attempts join the final row.
  const paid = { inputTokens: 0, outputTokens: 0, costUsd: 0 as number | null };
  const withPaid = (row: ScoreRow): ScoreRow =>
    paid.inputTokens + paid.outputTokens === 0
      ? row
      : {
          ...row,
          input_tokens: (row.input_tokens ?? 0) + paid.inputTokens,
          output_tokens: (row.output_tokens ?? 0) + paid.outputTokens,
          cost_usd: paid.costUsd === null || (row.cost_usd === null && row.source === 'LLM_JUDGE') ? null : Number(row.cost_usd ?? 0) + paid.costUsd,
        };
  let attempts = 1;
  try {
    const row = await withRetry(
      async (attempt) => {
        attempts = attempt;
        try {
          return withPaid(await scorer.score(inputs, { signal, evaluationId, applicationId }));
        } catch (thrown) {
          const usage = paidUsageOf(thrown);
          if (usage) {
            paid.inputTokens += usage.inputTokens;
            paid.outputTokens += usage.outputTokens;
            paid.costUsd = paid.costUsd === null || usage.costUsd === null ? null : paid.costUsd + usage.costUsd;
          }
          throw thrown instanceof EvalboxError ? thrown : new PermanentError(coerceError(thrown).message, { code: 'SCORER_FAILED', cause: thrown });
        }
      },
      ctx.retry,
      {
        signal,
        // provider back-pressure does not use up this evaluation's budget, nor its retry age
        uncounted: isPressure,
        onRetry: (error, attempt, delayMs) =>
          ctx.events.emit('scorer:retry', { dimension: scorer.dimension, code: (error as EvalboxError).code, attempt, delayMs, pressure: isPressure(error) }),
      },
    );
    return { row, attempts };
  } catch (error) {
    // A shutdown (or a revoked partition) aborts the work; it is redelivered, never terminal.
    if (signal.aborted) throw stopping(error);
    return { error: error as EvalboxError, attempts, paid: { ...paid } };
  }
}

/** Publishes a DLT record (original value and headers plus the failure context) and awaits its ack. */
async function deadLetter(ctx: ScorerContext, message: ConsumedMessage, failures: Failure[]): Promise<void> {
  const first = failures[0] as Failure;
  const headers: Record<string, Buffer | string> = { ...message.headers };
  Object.assign(headers, {
    dlt_original_topic: message.topic,
    dlt_original_partition: String(message.partition),
    dlt_original_offset: String(message.offset),
    dlt_consumer_group: ctx.groupId,
    dlt_error_class: first.error.name,
    dlt_error_code: first.error.code,
    dlt_error_message: first.error.message.slice(0, 1000),
    dlt_attempts: String(Math.max(...failures.map((f) => f.attempts))),
    dlt_failed_at: new Date().toISOString(),
    dlt_dimension: failures
      .map((f) => f.dimension)
      .filter(Boolean)
      .join(','),
  });
  try {
    await ctx.producer.send({ topic: ctx.topics.dlt, messages: [{ key: message.key, value: message.value, headers }] });
  } catch (thrown) {
    const error = classifyKafkaError(thrown);
    if (error.retryable) throw error;
    // The record itself is refused (e.g. larger than the broker takes): keep the failure context
    // and drop the value, which stays readable on the original topic at dlt_original_offset.
    headers.dlt_value_omitted = `${error.code}: ${message.value?.length ?? 0} bytes`;
    try {
      await ctx.producer.send({ topic: ctx.topics.dlt, messages: [{ key: message.key, value: null, headers: { ...dltHeadersOnly(headers) } }] });
    } catch (again) {
      throw classifyKafkaError(again);
    }
  }
  for (const f of failures) ctx.events.emit('scorer:deadLettered', { reason: f.error.code, dimension: f.dimension });
  // The logger is bound to the message (topic, partition, offset, event, trace, evaluation).
  ctx.logger.warn(
    {
      codes: failures.map((f) => f.error.code),
      dimensions: failures.map((f) => f.dimension),
    },
    'dead-lettered',
  );
}

/** Database work whose errors come out classified by SQLSTATE. */
async function withDb<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (thrown) {
    throw classifyPgError(thrown);
  }
}

/** The failure headers and the CloudEvents id and type: what a DLT record without its value keeps. */
function dltHeadersOnly(headers: Record<string, Buffer | string>): Record<string, Buffer | string> {
  return Object.fromEntries(Object.entries(headers).filter(([name]) => name.startsWith('dlt_') || name === 'ce_id' || name === 'ce_type'));
}

/** A deterministic fraction in [0, 1) per (evaluation, dimension), for sampling. */
function sampleFraction(evaluationId: string, dimension: string): number {
  return createHash('sha256').update(`${evaluationId}|${dimension}`).digest().readUInt32BE(0) / 2 ** 32;
}

export function createScorerEvents(): EventEmitter<ScorerEvents> {
  return new EventEmitter<ScorerEvents>();
}
