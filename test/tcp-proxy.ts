// A small TCP proxy for fault injection between clients and a real server (a Kafka broker,
// Postgres): it forwards bytes both ways until told to hold the server's answers back (requests
// still arrive and are written, acknowledgements do not come back), to cut every connection, or to
// refuse new ones (the server is down, as far as the client can tell).
import net from 'node:net';

export interface TcpProxy {
  port: number;
  /** From now on, broker-to-client bytes are held (on every connection, new ones too) until release(). */
  holdResponses(): void;
  /** From now on, client-to-server bytes are held too (nothing the client sends arrives) until release(). */
  holdRequests(): void;
  /** Delivers what was held and forwards normally again. */
  release(): void;
  /** Resets every open connection (new ones are accepted). */
  cutAll(): void;
  /** While on, every new connection is reset at once, as if nothing listened. */
  refuse(on: boolean): void;
  /** Client-to-broker bytes forwarded so far: lets a test act once a request went out. */
  bytesUp(): number;
  close(): Promise<void>;
}

/** `targetPort` is asked per connection, so the proxy can be started before the broker it fronts. */
export async function startTcpProxy(targetPort: () => number, listenPort = 0): Promise<TcpProxy> {
  const pairs = new Set<{ client: net.Socket; upstream: net.Socket; held: Buffer[]; heldUp: Buffer[] }>();
  let holding = false;
  let holdingUp = false;
  let refusing = false;
  let up = 0;

  const server = net.createServer((client) => {
    if (refusing) {
      client.resetAndDestroy();
      return;
    }
    const upstream = net.connect(targetPort(), '127.0.0.1');
    const pair = { client, upstream, held: [] as Buffer[], heldUp: [] as Buffer[] };
    pairs.add(pair);
    const end = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('data', (data) => {
      up += data.length;
      if (holdingUp) pair.heldUp.push(data);
      else upstream.write(data);
    });
    upstream.on('data', (data) => (holding ? pair.held.push(data) : client.write(data)));
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
  });
  await new Promise<void>((resolve) => server.listen(listenPort, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;

  return {
    port,
    holdResponses: () => {
      holding = true;
    },
    holdRequests: () => {
      holdingUp = true;
    },
    release: () => {
      holding = false;
      holdingUp = false;
      for (const pair of pairs) for (const data of pair.held.splice(0)) pair.client.write(data);
      for (const pair of pairs) for (const data of pair.heldUp.splice(0)) pair.upstream.write(data);
    },
    cutAll: () => {
      for (const pair of [...pairs]) {
        pair.client.resetAndDestroy();
        pair.upstream.destroy();
      }
    },
    refuse: (on) => {
      refusing = on;
    },
    bytesUp: () => up,
    close: () =>
      new Promise<void>((resolve) => {
        for (const pair of [...pairs]) {
          pair.client.destroy();
          pair.upstream.destroy();
        }
        server.close(() => resolve());
      }),
  };
}
