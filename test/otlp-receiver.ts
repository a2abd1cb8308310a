// A small OTLP/HTTP trace receiver for tests: POST /v1/traces, decoded by the request's content
// type (application/x-protobuf or application/json), spans kept in memory. The protobuf reader
// decodes only the fields the tests read, straight from the wire format.
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ReceivedSpan {
  service: string;
  traceId: string;
  spanId: string;
  parentSpanId: string;
  name: string;
  kind: number;
  links: { traceId: string; spanId: string }[];
  attributes: Record<string, string | number | boolean>;
  /** The content type it arrived with. */
  encoding: string;
}

export interface OtlpReceiver {
  /** Base URL for OTEL_EXPORTER_OTLP_ENDPOINT. */
  url: string;
  spans: ReceivedSpan[];
  /** Content types of the requests received. */
  contentTypes: Set<string>;
  close(): Promise<void>;
}

export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const spans: ReceivedSpan[] = [];
  const contentTypes = new Set<string>();
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const type = (req.headers['content-type'] ?? '').split(';')[0]?.trim() ?? '';
      contentTypes.add(type);
      if (req.method !== 'POST' || req.url !== '/v1/traces') {
        res.writeHead(404).end();
        return;
      }
      const body = Buffer.concat(chunks);
      try {
        if (type === 'application/json') spans.push(...fromJson(JSON.parse(body.toString('utf8')) as JsonRequest, type));
        else if (type === 'application/x-protobuf') spans.push(...fromProtobuf(body, type));
        else {
          res.writeHead(415).end();
          return;
        }
      } catch {
        res.writeHead(400).end();
        return;
      }
      res.writeHead(200, { 'content-type': type }).end(type === 'application/json' ? '{}' : undefined);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    spans,
    contentTypes,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

// --- JSON (OTLP/JSON: ids as hex strings) ---
interface JsonValue {
  stringValue?: string;
  intValue?: string | number;
  boolValue?: boolean;
  doubleValue?: number;
}
interface JsonSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind?: number;
  links?: { traceId: string; spanId: string }[];
  attributes?: { key: string; value: JsonValue }[];
}
interface JsonRequest {
  resourceSpans?: { resource?: { attributes?: { key: string; value: JsonValue }[] }; scopeSpans?: { spans?: JsonSpan[] }[] }[];
}

const jsonValue = (v: JsonValue): string | number | boolean =>
  v.stringValue ?? (v.intValue !== undefined ? Number(v.intValue) : (v.boolValue ?? v.doubleValue ?? ''));

function fromJson(request: JsonRequest, encoding: string): ReceivedSpan[] {
  const out: ReceivedSpan[] = [];
  for (const rs of request.resourceSpans ?? []) {
    const service = String(jsonValue(rs.resource?.attributes?.find((a) => a.key === 'service.name')?.value ?? {}));
    for (const ss of rs.scopeSpans ?? [])
      for (const s of ss.spans ?? [])
        out.push({
          service,
          traceId: s.traceId,
          spanId: s.spanId,
          parentSpanId: s.parentSpanId ?? '',
          name: s.name,
          kind: s.kind ?? 0,
          links: (s.links ?? []).map((l) => ({ traceId: l.traceId, spanId: l.spanId })),
          attributes: Object.fromEntries((s.attributes ?? []).map((a) => [a.key, jsonValue(a.value)])),
          encoding,
        });
  }
  return out;
}

// --- protobuf (opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest) ---
type Field = { no: number; wire: number; value: Buffer | bigint };

function* fields(buffer: Buffer): Generator<Field> {
  let at = 0;
  const varint = (): bigint => {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      const byte = buffer[at++] as number;
      result |= BigInt(byte & 0x7f) << shift;
      if ((byte & 0x80) === 0) return result;
      shift += 7n;
    }
  };
  while (at < buffer.length) {
    const tag = Number(varint());
    const no = tag >> 3;
    const wire = tag & 7;
    if (wire === 0) yield { no, wire, value: varint() };
    else if (wire === 1) {
      yield { no, wire, value: buffer.subarray(at, at + 8) };
      at += 8;
    } else if (wire === 2) {
      const length = Number(varint());
      yield { no, wire, value: buffer.subarray(at, at + length) };
      at += length;
    } else if (wire === 5) {
      yield { no, wire, value: buffer.subarray(at, at + 4) };
      at += 4;
    } else throw new Error(`unsupported wire type ${wire}`);
  }
}

const bytesOf = (f: Field): Buffer => f.value as Buffer;
const textOf = (f: Field): string => bytesOf(f).toString('utf8');

function anyValue(buffer: Buffer): string | number | boolean {
  for (const f of fields(buffer)) {
    if (f.no === 1) return textOf(f);
    if (f.no === 2) return (f.value as bigint) !== 0n;
    if (f.no === 3) return Number(f.value);
    if (f.no === 4) return bytesOf(f).readDoubleLE(0);
  }
  return '';
}

function keyValues(list: Field[]): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {};
  for (const kv of list) {
    let key = '';
    let value: string | number | boolean = '';
    for (const f of fields(bytesOf(kv))) {
      if (f.no === 1) key = textOf(f);
      if (f.no === 2) value = anyValue(bytesOf(f));
    }
    out[key] = value;
  }
  return out;
}

function fromProtobuf(body: Buffer, encoding: string): ReceivedSpan[] {
  const out: ReceivedSpan[] = [];
  for (const rs of fields(body)) {
    if (rs.no !== 1) continue;
    let service = '';
    const scopeSpans: Buffer[] = [];
    for (const f of fields(bytesOf(rs))) {
      if (f.no === 1) service = String(keyValues([...fields(bytesOf(f))].filter((a) => a.no === 1))['service.name'] ?? '');
      if (f.no === 2) scopeSpans.push(bytesOf(f));
    }
    for (const ss of scopeSpans)
      for (const sf of fields(ss)) {
        if (sf.no !== 2) continue;
        const span: ReceivedSpan = { service, traceId: '', spanId: '', parentSpanId: '', name: '', kind: 0, links: [], attributes: {}, encoding };
        const attributes: Field[] = [];
        for (const f of fields(bytesOf(sf))) {
          if (f.no === 1) span.traceId = bytesOf(f).toString('hex');
          else if (f.no === 2) span.spanId = bytesOf(f).toString('hex');
          else if (f.no === 4) span.parentSpanId = bytesOf(f).toString('hex');
          else if (f.no === 5) span.name = textOf(f);
          else if (f.no === 6) span.kind = Number(f.value);
          else if (f.no === 9) attributes.push(f);
          else if (f.no === 13) {
            const link = { traceId: '', spanId: '' };
            for (const l of fields(bytesOf(f))) {
              if (l.no === 1) link.traceId = bytesOf(l).toString('hex');
              if (l.no === 2) link.spanId = bytesOf(l).toString('hex');
            }
            span.links.push(link);
          }
        }
        span.attributes = keyValues(attributes);
        out.push(span);
      }
  }
  return out;
}
