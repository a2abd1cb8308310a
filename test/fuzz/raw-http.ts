// A raw HTTP/1.1 client for the fuzz: it writes exactly the bytes a case asks for (invalid
// UTF-8, a Content-Length that lies, a body cut short, a connection dropped mid-upload), which
// fetch and undici refuse to send, and reads back whatever the server answers.
import net from 'node:net';

export interface RawRequest {
  method: string;
  path: string;
  headers: [string, string][];
  body: Buffer;
  /** normal; truncated: Content-Length says more than is sent, then the write side closes; aborted: the socket is destroyed mid-body. */
  transport: 'normal' | 'truncated' | 'aborted';
}

export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

function decodeChunked(body: Buffer): Buffer {
  const parts: Buffer[] = [];
  let at = 0;
  while (at < body.length) {
    const lineEnd = body.indexOf('\r\n', at);
    if (lineEnd < 0) break;
    const size = parseInt(body.subarray(at, lineEnd).toString('latin1'), 16);
    if (!Number.isFinite(size) || size === 0) break;
    parts.push(body.subarray(lineEnd + 2, lineEnd + 2 + size));
    at = lineEnd + 2 + size + 2;
  }
  return Buffer.concat(parts);
}

export function parseResponse(raw: Buffer): RawResponse | undefined {
  const split = raw.indexOf('\r\n\r\n');
  if (split < 0) return undefined;
  const [statusLine, ...lines] = raw.subarray(0, split).toString('latin1').split('\r\n');
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine ?? '')?.[1]);
  if (!status) return undefined;
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(':');
    if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  let body = raw.subarray(split + 4);
  if (headers['transfer-encoding']?.toLowerCase() === 'chunked') body = decodeChunked(body);
  return { status, headers, body };
}

/** Sends one request on its own connection; resolves with the answer, or undefined when none came. */
export function sendRaw(port: number, request: RawRequest, timeoutMs = 15_000): Promise<RawResponse | undefined> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    const chunks: Buffer[] = [];
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(parseResponse(Buffer.concat(chunks)));
    };
    const timer = setTimeout(finish, timeoutMs);
    socket.on('data', (d: Buffer) => chunks.push(d));
    socket.on('error', finish);
    socket.on('close', finish);
    socket.on('connect', () => {
      const declared = request.transport === 'truncated' ? request.body.length + 100 : request.body.length;
      const head =
        `${request.method} ${request.path} HTTP/1.1\r\nhost: 127.0.0.1:${port}\r\nconnection: close\r\n` +
        request.headers.map(([name, value]) => `${name}: ${value}\r\n`).join('') +
        (request.method === 'GET' && request.body.length === 0 ? '' : `content-length: ${declared}\r\n`) +
        '\r\n';
      socket.write(Buffer.from(head, 'latin1'));
      if (request.transport === 'aborted') {
        socket.write(request.body.subarray(0, Math.floor(request.body.length / 2)));
        setTimeout(() => socket.destroy(), 5);
        return;
      }
      socket.write(request.body);
      if (request.transport === 'truncated') socket.end();
    });
  });
}
