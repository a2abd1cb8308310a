// The API's HTTP server: Node's http server with timeouts against slow clients, serving the hono
// app through @hono/node-server's listener. A request Node can parse but hono cannot turn into a
// Request (a malformed Host header) still gets a problem+json answer.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { getRequestListener } from '@hono/node-server';
import type { Config } from '../config.js';
import type { Logger } from '../logging.js';
import { PROBLEM_CONTENT_TYPE } from './problem.js';

export interface ServedApi {
  server: Server;
  port: number;
}

const CLIENT_ERRORS: Record<string, { status: number; title: string; detail: string }> = {
  HPE_HEADER_OVERFLOW: { status: 431, title: 'Request Header Fields Too Large', detail: 'the request headers exceed the server limit' },
  ERR_HTTP_REQUEST_TIMEOUT: { status: 408, title: 'Request Timeout', detail: 'the request did not arrive in time' },
  // Not 501: no input may produce a 5xx, and the fault is the client's.
  HPE_INVALID_METHOD: { status: 400, title: 'Bad Request', detail: 'the request method is not one this server knows' },
};

/**
 * What Node's HTTP parser rejects before any handler runs (an unknown method, headers over the
 * size limit, a broken request line, a request that took too long) gets a problem+json answer
 * too, instead of Node's bare status line.
 */
function answerClientError(error: NodeJS.ErrnoException, socket: import('node:stream').Duplex): void {
  // Nothing to answer on a connection the client already dropped, or where a response started.
  if (error.code === 'ECONNRESET' || !socket.writable || (socket as { _httpMessage?: unknown })._httpMessage) {
    socket.destroy();
    return;
  }
  const known = CLIENT_ERRORS[error.code ?? ''] ?? { status: 400, title: 'Bad Request', detail: 'the request could not be parsed as HTTP/1.1' };
  const body = JSON.stringify({ type: 'about:blank', ...known });
  socket.end(
    `HTTP/1.1 ${known.status} ${known.title}\r\ncontent-type: ${PROBLEM_CONTENT_TYPE}\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
  );
}

export function serveApi(app: { fetch: (request: Request, env: never) => Response | Promise<Response> }, config: Config, logger: Logger): Promise<ServedApi> {
  const listener = getRequestListener(app.fetch as Parameters<typeof getRequestListener>[0], {
    errorHandler: (error) => {
      logger.debug({ err: { type: (error as Error).name, message: (error as Error).message } }, 'unparseable request');
      return new Response(JSON.stringify({ type: 'about:blank', title: 'Bad Request', status: 400, detail: 'the request line or Host header is malformed' }), {
        status: 400,
        headers: { 'content-type': PROBLEM_CONTENT_TYPE, connection: 'close' },
      });
    },
  });
  const { headersTimeoutMs, requestTimeoutMs, keepAliveTimeoutMs, bodyIdleTimeoutMs } = config.api;
  const exchanges = new WeakMap<Socket, { request: IncomingMessage; response: ServerResponse; startedAt: number }>();
  const server = createServer(
    {
      // Headers must arrive within headersTimeout and the whole request within requestTimeout;
      // Node checks both every connectionsCheckingInterval.
      headersTimeout: headersTimeoutMs,
      requestTimeout: Math.max(requestTimeoutMs, headersTimeoutMs),
      keepAliveTimeout: keepAliveTimeoutMs,
      connectionsCheckingInterval: Math.min(1_000, headersTimeoutMs),
    },
    (request, response) => {
      exchanges.set(request.socket, { request, response, startedAt: Date.now() });
      void listener(request, response);
    },
  );
  server.on('clientError', (error: NodeJS.ErrnoException, socket) => answerClientError(error, socket));
  // A socket quiet for this long (a body that stopped, a client that stopped reading) is destroyed.
  // One whose request arrived whole and whose answer has not started is quiet because the server is
  // still working (a lock wait, a paused process): that is not the client's idleness, and the answer
  // must not be lost. It gets up to requestTimeout from the request's start, then it is cut too.
  server.setTimeout(bodyIdleTimeoutMs, (socket: Socket) => {
    const exchange = exchanges.get(socket);
    const awaitingAnswer = exchange?.request.complete && !exchange.response.headersSent;
    if (awaitingAnswer && Date.now() - exchange.startedAt < requestTimeoutMs) {
      socket.setTimeout(bodyIdleTimeoutMs); // 'timeout' fires once per quiet stretch: look again later
      return;
    }
    socket.destroy();
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.api.port, config.host, () => {
      const address = server.address();
      resolve({ server, port: typeof address === 'object' && address ? address.port : config.api.port });
    });
  });
}
