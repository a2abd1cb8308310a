// The API's HTTP server: Node's http server with timeouts against slow clients, serving the hono
// app through @hono/node-server's listener. A request Node can parse but hono cannot turn into a
// Request (a malformed Host header) still gets a problem+json answer.
import { createServer, type Server } from 'node:http';
import { getRequestListener } from '@hono/node-server';
import type { Config } from '../config.js';
import type { Logger } from '../logging.js';
import { PROBLEM_CONTENT_TYPE } from './problem.js';

export interface ServedApi {
  server: Server;
  port: number;
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
  const server = createServer(
    {
      // Headers must arrive within headersTimeout and the whole request within requestTimeout;
      // Node checks both every connectionsCheckingInterval.
      headersTimeout: headersTimeoutMs,
      requestTimeout: Math.max(requestTimeoutMs, headersTimeoutMs),
      keepAliveTimeout: keepAliveTimeoutMs,
      connectionsCheckingInterval: Math.min(1_000, headersTimeoutMs),
    },
    listener,
  );
  // A socket on which nothing arrives for this long (a body that stopped) is destroyed.
  server.setTimeout(bodyIdleTimeoutMs, (socket) => socket.destroy());
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.api.port, config.host, () => {
      const address = server.address();
      resolve({ server, port: typeof address === 'object' && address ? address.port : config.api.port });
    });
  });
}
