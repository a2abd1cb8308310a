// Prometheus metrics and the admin port every long-running process serves: /healthz, /readyz,
// /metrics. Each process builds its own Registry (never prom-client's global one).
import { serve, type Http2Bindings, type HttpBindings, type ServerType } from '@hono/node-server';
import { Hono } from 'hono';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

export function createRegistry(processName: string): Registry {
  const registry = new Registry();
  registry.setDefaultLabels({ process: processName });
  collectDefaultMetrics({ register: registry });
  return registry;
}

/**
 * The metric builders of one process, each metric registered in `registry` (never the global
 * one): the one shape the relay, scorer and judge metrics modules declare their metrics in.
 */
export function metricsIn(registry: Registry) {
  const registers = [registry];
  return {
    counter: <L extends string = never>(name: string, help: string, labelNames: readonly L[] = []) => new Counter<L>({ name, help, labelNames, registers }),
    gauge: <L extends string = never>(name: string, help: string, labelNames: readonly L[] = []) => new Gauge<L>({ name, help, labelNames, registers }),
    histogram: <L extends string = never>(name: string, help: string, buckets: number[], labelNames: readonly L[] = []) =>
      new Histogram<L>({ name, help, buckets, labelNames, registers }),
    /** A gauge read at scrape time. */
    sampled: (name: string, help: string, read: () => number) =>
      new Gauge({
        name,
        help,
        registers,
        collect() {
          this.set(read());
        },
      }),
  };
}

export interface AdminServer {
  port: number;
  close(): Promise<void>;
}

/** `ready` throws (or rejects) when the process cannot do its work, e.g. the database is down. */
export function createAdminApp(registry: Registry, ready: () => Promise<void>): Hono {
  const app = new Hono();
  app.get('/healthz', (c) => c.json({ status: 'ok' }));
  app.get('/readyz', async (c) => {
    try {
      await ready();
      return c.json({ status: 'ready' });
    } catch (error) {
      // Which dependency failed, never the raw error text (it can name hosts, ports, users).
      const dependency = (error as { dependency?: unknown } | null)?.dependency;
      return c.json({ status: 'not ready', failed: [typeof dependency === 'string' ? dependency : 'unknown'] }, 503);
    }
  });
  app.get('/metrics', async (c) => c.body(await registry.metrics(), 200, { 'content-type': registry.contentType }));
  return app;
}

export function listen(
  app: { fetch: (request: Request, env: HttpBindings | Http2Bindings) => Response | Promise<Response> },
  port: number,
  host: string,
): Promise<{ server: ServerType; port: number }> {
  return new Promise((resolve, reject) => {
    const server = serve({ fetch: app.fetch, port, hostname: host }, (info) => resolve({ server, port: info.port }));
    server.once('error', reject);
  });
}

export function closeServer(server: ServerType): Promise<void> {
  return new Promise((resolve) => {
    if ('closeIdleConnections' in server) (server as { closeIdleConnections(): void }).closeIdleConnections();
    server.close(() => resolve());
  });
}

export async function serveAdmin(registry: Registry, ready: () => Promise<void>, port: number, host: string): Promise<AdminServer> {
  const { server, port: bound } = await listen(createAdminApp(registry, ready), port, host);
  return { port: bound, close: () => closeServer(server) };
}
