// Wake-up sources for idle shard workers. A wake-up is only a nudge: the adaptive poll is the
// safety net, so a source that misses or repeats nudges never loses or duplicates a row.
import pg from 'pg';

export interface WakeupSource {
  /** Starts calling `wake(shard)` when rows of `shard` may be waiting. */
  start(wake: (shard: number) => void, onError: (where: string, error: unknown) => void): Promise<void>;
  stop(): Promise<void>;
}

/** LISTEN evalbox_outbox on a dedicated connection; the payload is the shard number. */
export function listenWakeups(databaseUrl: string): WakeupSource {
  let listener: pg.Client | undefined;
  let stopped = false;
  async function listen(wake: (shard: number) => void, onError: (where: string, error: unknown) => void): Promise<void> {
    const client = new pg.Client({ connectionString: databaseUrl, application_name: 'evalbox-relay-listen' });
    client.on('error', (error) => {
      onError('listen connection', error);
      // Polling keeps working; reconnect the nudge channel in the background.
      if (listener === client) {
        listener = undefined;
        setTimeout(() => void (stopped ? undefined : listen(wake, onError).catch((e) => onError('listen', e))), 1000);
      }
    });
    client.on('notification', (message) => wake(Number(message.payload)));
    await client.connect();
    await client.query('LISTEN evalbox_outbox');
    listener = client;
  }
  return {
    start: (wake, onError) => listen(wake, onError),
    async stop() {
      stopped = true;
      await listener?.end().catch(() => {});
      listener = undefined;
    },
  };
}
