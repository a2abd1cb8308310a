// Wake-up sources for idle shard workers: a dedicated connection LISTENs for the nudges writers
// send after they commit (src/outbox-wakeup.ts). A nudge only shortens the wait before the next
// read; the adaptive poll in the shard loop is the safety net, so a source that misses or repeats
// nudges (or loses its connection until it reconnects) costs latency, never an event.
import pg from 'pg';
import { TCP_KEEPALIVE } from '../src/db/index.js';
import { OUTBOX_CHANNEL } from '../src/outbox-wakeup.js';

export interface WakeupSource {
  /** Starts calling `wake(shard)` when rows of `shard` may be waiting (undefined: any shard). */
  start(wake: (shard: number | undefined) => void, onError: (where: string, error: unknown) => void): Promise<void>;
  stop(): Promise<void>;
}

/** LISTEN on the outbox channel; after a connection error, reconnects in the background until stopped. */
export function listenWakeups(databaseUrl: string, reconnectMs = 1000): WakeupSource {
  let client: pg.Client | undefined;
  let reconnect: NodeJS.Timeout | undefined;
  let stopped = false;

  async function connect(wake: (shard: number | undefined) => void, onError: (where: string, error: unknown) => void): Promise<void> {
    // Keepalive as on the relay's pool: a LISTEN connection only waits, so without it a peer that
    // vanished without a word (a dropped route, a host gone) would never be noticed.
    const next = new pg.Client({
      connectionString: databaseUrl,
      application_name: 'evalbox-relay-listen',
      ...TCP_KEEPALIVE,
    });
    next.on('error', (error) => {
      onError('listen connection', error);
      if (client !== next) return;
      client = undefined;
      next.end().catch(() => {});
      scheduleReconnect(wake, onError);
    });
    next.on('notification', (message) => {
      const payload = message.payload ?? '';
      wake(/^\d+$/.test(payload) ? Number(payload) : undefined);
    });
    try {
      await next.connect();
      await next.query(`LISTEN ${OUTBOX_CHANNEL}`);
    } catch (error) {
      await next.end().catch(() => {});
      throw error;
    }
    // Stopped while connecting (a SIGTERM during a reconnect): an open connection nobody ends
    // would keep the process alive.
    if (stopped) {
      await next.end().catch(() => {});
      return;
    }
    client = next;
    // Rows committed while the listener was away are found by the poll; one nudge to every
    // shard after a (re)connect makes that immediate.
    wake(undefined);
  }

  function scheduleReconnect(wake: (shard: number | undefined) => void, onError: (where: string, error: unknown) => void): void {
    if (stopped) return;
    reconnect = setTimeout(() => {
      connect(wake, onError).catch((error: unknown) => {
        onError('listen', error);
        scheduleReconnect(wake, onError);
      });
    }, reconnectMs);
  }

  return {
    start: (wake, onError) => connect(wake, onError),
    async stop() {
      stopped = true;
      clearTimeout(reconnect);
      const current = client;
      client = undefined;
      await current?.end().catch(() => {});
    },
  };
}
