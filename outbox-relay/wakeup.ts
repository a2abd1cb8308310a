// The relay's side of the wake-up: a dedicated connection LISTENs for the nudges writers send
// after they commit (src/outbox-wakeup.ts). A nudge only shortens the wait before the next read;
// the adaptive poll in the shard loop is the safety net, so a lost connection costs latency until
// it is reconnected, never an event.
import pg from 'pg';
import { OUTBOX_CHANNEL } from '../src/outbox-wakeup.js';

export interface NudgeListenerOptions {
  databaseUrl: string;
  /** A shard number, or undefined for "every shard". */
  onNudge: (shard: number | undefined) => void;
  onError: (where: string, error: unknown) => void;
  signal: AbortSignal;
  reconnectMs?: number;
}

export interface NudgeListener {
  close(): Promise<void>;
}

/** Connects and LISTENs; after a connection error, reconnects in the background until closed. */
export async function listenForNudges(options: NudgeListenerOptions): Promise<NudgeListener> {
  let client: pg.Client | undefined;
  let reconnect: NodeJS.Timeout | undefined;

  async function connect(): Promise<void> {
    const next = new pg.Client({ connectionString: options.databaseUrl, application_name: 'evalbox-relay-listen' });
    next.on('error', (error) => {
      options.onError('listen connection', error);
      if (client !== next) return;
      client = undefined;
      next.end().catch(() => {});
      scheduleReconnect();
    });
    next.on('notification', (message) => {
      const payload = message.payload ?? '';
      options.onNudge(/^\d+$/.test(payload) ? Number(payload) : undefined);
    });
    try {
      await next.connect();
      await next.query(`LISTEN ${OUTBOX_CHANNEL}`);
    } catch (error) {
      await next.end().catch(() => {});
      throw error;
    }
    client = next;
    // Rows committed while the listener was away are found by the poll; one nudge to every
    // shard after a reconnect makes that immediate.
    options.onNudge(undefined);
  }

  function scheduleReconnect(): void {
    if (options.signal.aborted) return;
    reconnect = setTimeout(() => {
      connect().catch((error) => {
        options.onError('listen', error);
        scheduleReconnect();
      });
    }, options.reconnectMs ?? 1000);
  }

  await connect();
  return {
    async close() {
      clearTimeout(reconnect);
      const current = client;
      client = undefined;
      await current?.end().catch(() => {});
    },
  };
}
