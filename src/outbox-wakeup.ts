// Wakes the outbox relay after a writer has committed, from outside the writing transaction.
// A transaction that issues NOTIFY takes a cluster-wide lock for its whole commit, WAL flush
// included, so that notifications queue in commit order: every writer that notifies inside its
// own transaction commits one at a time (docs/relay.md, "Wake-up", has the measurements). Here
// the writer's transaction never notifies; after it commits, the process sends one small
// transaction of its own that does. Nudges are coalesced: at most one is in flight per process,
// and every commit that happens meanwhile rides on the next one. That transaction commits with
// synchronous_commit off (a nudge needs no durability), so it holds the lock only briefly.
// A lost nudge costs latency, never an event: the relay's poll is the safety net.
import { CompiledQuery } from 'kysely';
import type { Db } from './db/index.js';

/** The channel the relay LISTENs on. The payload is a shard number, or empty for every shard. */
export const OUTBOX_CHANNEL = 'evalbox_outbox';

const NUDGE_SQL = `SELECT set_config('synchronous_commit', 'off', true), pg_notify('${OUTBOX_CHANNEL}', shard) FROM unnest($1::text[]) AS shard`;

export interface OutboxNudger {
  /** After a commit that wrote outbox rows of `shards` (all shards when omitted). Never throws. */
  nudge(shards?: Iterable<number>): void;
  /** Resolves once no nudge is pending or in flight. */
  idle(): Promise<void>;
}

export function createOutboxNudger(db: Db, options: { onError?: (error: unknown) => void } = {}): OutboxNudger {
  let pending: Set<string> | undefined;
  let inFlight: Promise<void> | undefined;

  function send(): void {
    const payloads = [...(pending as Set<string>)];
    pending = undefined;
    inFlight = db
      .executeQuery(CompiledQuery.raw(NUDGE_SQL, [payloads]))
      .then(
        () => undefined,
        (error: unknown) => options.onError?.(error),
      )
      .finally(() => {
        inFlight = undefined;
        if (pending) send();
      });
  }

  return {
    nudge(shards) {
      pending ??= new Set();
      if (shards === undefined) pending.add('');
      else for (const shard of shards) pending.add(String(shard));
      if (!inFlight) send();
    },
    async idle() {
      while (inFlight) await inFlight;
    },
  };
}

/** A nudger that sends nothing: for writers whose relay polls, and for measuring without one. */
export const NO_NUDGES: OutboxNudger = { nudge: () => undefined, idle: async () => undefined };
