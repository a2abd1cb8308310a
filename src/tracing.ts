// Tracing with OpenTelemetry. One trace follows an evaluation: the ingest request's span, the
// relay's publish (linked, a batch carries many traces), the scorer's span per evaluation and per
// judge call. The context crosses process boundaries as a W3C `traceparent` (CloudEvents'
// distributed-tracing extension): in the outbox row's stored headers, then as a Kafka header.
//
// Off by default. `OTEL_TRACES_EXPORTER=otlp` loads the Node SDK, which reads the standard OTEL_*
// variables itself; otherwise the SDK is never imported and `inSpan` creates no span at all (it
// hands the work the parent's non-recording span; attributes are only computed when
// `span.isRecording()`).
// A client's own traceparent still travels end to end when tracing is off: a no-op span keeps the
// parent's context, and traceparents here are formatted from span contexts, not by a propagator.
import {
  context,
  INVALID_SPAN_CONTEXT,
  isSpanContextValid,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  type Attributes,
  type Context,
  type Link,
  type Span,
  type SpanContext,
} from '@opentelemetry/api';
import type { Config } from './config.js';
import { EvalboxError } from './errors.js';
import type { Logger } from './logging.js';

export { SpanKind, type Link, type Span };

/** The root context: a span started from it begins a trace of its own. */
export const ROOT = ROOT_CONTEXT;

/** What `inSpan` hands its work while tracing is off and there is no parent: records nothing. */
const NO_SPAN = trace.wrapSpanContext(INVALID_SPAN_CONTEXT);

// Mirrors the SDK's own global registration with the OpenTelemetry API: whether it was started.
let started = false;
/** Whether this process exports spans (work that only feeds spans can be skipped when not). */
export const tracingStarted = (): boolean => started;

/** W3C trace-context version 00: trace id, parent (span) id, flags; all-zero ids are invalid. */
export const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

const tracer = () => trace.getTracer('evalbox');

/** The span context a traceparent names, or undefined for anything malformed or invalid. */
export function parseTraceparent(text: string | undefined): SpanContext | undefined {
  const match = text === undefined ? null : TRACEPARENT.exec(text);
  if (!match) return undefined;
  const spanContext: SpanContext = {
    traceId: match[1] as string,
    spanId: match[2] as string,
    traceFlags: parseInt(match[3] as string, 16) & 1,
    isRemote: true,
  };
  return isSpanContextValid(spanContext) ? spanContext : undefined;
}

export function formatTraceparent(spanContext: SpanContext): string | undefined {
  if (!isSpanContextValid(spanContext)) return undefined;
  return `00-${spanContext.traceId}-${spanContext.spanId}-${(spanContext.traceFlags & 1).toString(16).padStart(2, '0')}`;
}

/** The traceparent of a span (its own id as the parent of what follows), or undefined. */
export const traceparentOf = (span: Span | undefined): string | undefined => (span ? formatTraceparent(span.spanContext()) : undefined);

/** The traceparent of the span active here, or undefined. */
export const activeTraceparent = (): string | undefined => traceparentOf(trace.getActiveSpan());

/** The trace id of a traceparent (for log lines), or undefined. */
export const traceIdOf = (traceparent: string | undefined): string | undefined => parseTraceparent(traceparent)?.traceId;

/** A context whose parent is the remote span a traceparent names (the root context without one). */
export function contextFromTraceparent(traceparent: string | undefined): Context {
  const parent = parseTraceparent(traceparent);
  return parent ? trace.setSpanContext(ROOT_CONTEXT, parent) : ROOT_CONTEXT;
}

/** Links to each distinct valid traceparent (a batch span points at every trace it carries). */
export function linksTo(traceparents: Iterable<string | undefined>): Link[] {
  const links = new Map<string, Link>();
  for (const text of traceparents) {
    const spanContext = parseTraceparent(text);
    if (spanContext) links.set(`${spanContext.traceId}-${spanContext.spanId}`, { context: spanContext });
  }
  return [...links.values()];
}

export interface SpanOptions {
  kind?: SpanKind;
  attributes?: Attributes;
  links?: Link[];
  /** The parent; defaults to the active context. */
  parent?: Context;
}

/**
 * Runs `work` inside a new span, active for everything it awaits, and ends the span. A failure
 * marks the span with the error's code and class only: error messages can quote input text
 * (JSON.parse quotes what it could not parse), and spans must not carry prompts or responses.
 */
export function inSpan<T>(name: string, options: SpanOptions, work: (span: Span) => Promise<T>): Promise<T> {
  const parent = options.parent ?? context.active();
  // Tracing off: no span at all, only the parent's context carried on (a client's traceparent).
  if (!started) return work(trace.getSpan(parent) ?? NO_SPAN);
  return inRecordedSpan(name, options, parent, work);
}

async function inRecordedSpan<T>(name: string, options: SpanOptions, parent: Context, work: (span: Span) => Promise<T>): Promise<T> {
  const span = tracer().startSpan(name, { kind: options.kind ?? SpanKind.INTERNAL, attributes: options.attributes, links: options.links }, parent);
  try {
    return await context.with(trace.setSpan(parent, span), () => work(span));
  } catch (error) {
    if (span.isRecording()) {
      const code = error instanceof EvalboxError ? error.code : error instanceof Error ? error.name : 'UNKNOWN';
      span.setAttribute('error.type', code);
      span.setStatus({ code: SpanStatusCode.ERROR, message: code });
    }
    throw error;
  } finally {
    span.end();
  }
}

/**
 * Starts the OpenTelemetry Node SDK when the configuration asks for OTLP export, and returns what
 * flushes and stops it (add it to the process's releasers first, so it runs last). With tracing
 * off it imports nothing and returns a no-op.
 */
export async function startTracing(telemetry: Config['telemetry'], defaultServiceName: string, logger: Logger): Promise<() => Promise<void>> {
  if (telemetry.tracesExporter !== 'otlp') return async () => {};
  const { NodeSDK } = await import('@opentelemetry/sdk-node');
  // Traces only: no metrics (Prometheus serves those on the admin port) and no log export.
  const sdk = new NodeSDK({ serviceName: telemetry.serviceName || defaultServiceName, metricReaders: [], logRecordProcessors: [] });
  sdk.start();
  started = true;
  logger.info({ endpoint: telemetry.otlpEndpoint || 'default', protocol: telemetry.otlpProtocol }, 'tracing on: exporting spans over OTLP');
  return async () => {
    try {
      started = false;
      await sdk.shutdown();
    } catch (error) {
      logger.warn({ err: error }, 'flushing spans failed');
    }
  };
}
