// `evalbox outbox …`: the inspection questions of db/inspect/*.sql as readable tables (or JSON),
// and redrive of parked rows.
import { sql } from 'kysely';
import { loadConfig, requireSetting } from '../config.js';
import { createDb, type Db } from '../db/index.js';
import { runInspection } from '../inspect.js';
import { CONNECTION_HELP, CONNECTION_OPTIONS, parse, printJson, printTable, UsageError, type Command } from './args.js';

/** Re-inserts parked rows into the outbox as new rows with the same event id (a stable ce_id). */
export async function redriveParked(db: Db, target: { id?: string; all?: boolean }): Promise<string[]> {
  return db.transaction().execute(async (trx) => {
    const { rows } = await sql<{ id: string }>`
      WITH chosen AS (
        UPDATE outbox_parked SET redriven_at = now()
        WHERE redriven_at IS NULL AND (${target.all === true} OR id = ${target.id ?? null}::uuid)
        RETURNING id, topic, key, type, source, headers, payload
      ), requeued AS (
        INSERT INTO outbox (id, shard, topic, key, type, source, headers, payload)
        SELECT id, outbox_shard_of(key), topic, key, type, source, headers, payload FROM chosen
        RETURNING id
      )
      SELECT id FROM requeued`.execute(trx);
    return rows.map((r) => r.id);
  });
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export const outboxCommand: Command = {
  name: 'outbox',
  summary: 'inspect the outbox: backlog, oldest, throughput, key, parked, redrive',
  help: `Usage:
  evalbox outbox backlog                 unpublished events and the oldest one's age, per topic
  evalbox outbox oldest [--limit N]      the oldest unpublished events (and whether the horizon hides them)
  evalbox outbox throughput [--minutes M] events published per minute, per topic
  evalbox outbox horizon                 the backend whose open transaction holds the relay back
  evalbox outbox key KEY [--limit N]     one key's events in relay order, with their state
  evalbox outbox parked [--limit N]      rows the relay parked (too large, illegal topic)
  evalbox outbox redrive ID | --all      put parked rows back into the outbox (same event id)
  evalbox outbox shards                  relay shards: leader, lease epoch, cursor, last publish
  evalbox outbox stages [--minutes M]    per minute: accepted, published, scored, results published, parked
The SQL behind each lives in db/inspect/*.sql.
${CONNECTION_HELP}`,
  async run(argv) {
    const { values, positionals } = parse(
      argv,
      { ...CONNECTION_OPTIONS, limit: { type: 'string' }, minutes: { type: 'string' }, all: { type: 'boolean' } },
      true,
    );
    if (values.help) {
      process.stdout.write(`${this.help}\n`);
      return 0;
    }
    const [action, argument] = positionals;
    const limit = Number(values.limit ?? 20);
    const minutes = Number(values.minutes ?? 15);
    if (!Number.isInteger(limit) || limit < 1) throw new UsageError('--limit must be a positive integer');
    if (!Number.isInteger(minutes) || minutes < 1) throw new UsageError('--minutes must be a positive integer');
    const known = ['backlog', 'oldest', 'throughput', 'horizon', 'key', 'parked', 'redrive', 'shards', 'stages'];
    if (!known.includes(action ?? '')) throw new UsageError(`expected one of ${known.join(', ')}, got "${action ?? ''}"`);
    if (action === 'key' && !argument) throw new UsageError('outbox key needs a KEY');
    if (action === 'redrive' && !values.all && !(argument && UUID.test(argument))) throw new UsageError('outbox redrive needs a parked event id or --all');

    const config = loadConfig(process.env, values);
    const handle = createDb(requireSetting(config.databaseUrl, 'DATABASE_URL'), { max: 1, applicationName: 'evalbox-cli' });
    try {
      let rows: Record<string, unknown>[];
      switch (action) {
        case 'backlog':
          rows = await runInspection(handle.db, 'backlog');
          break;
        case 'oldest':
          rows = await runInspection(handle.db, 'oldest', [limit]);
          break;
        case 'throughput':
          rows = await runInspection(handle.db, 'throughput', [minutes]);
          break;
        case 'horizon':
          rows = await runInspection(handle.db, 'horizon_blocker');
          break;
        case 'key':
          rows = await runInspection(handle.db, 'key_history', [argument, limit]);
          break;
        case 'parked':
          rows = await runInspection(handle.db, 'parked', [limit]);
          break;
        case 'shards':
          rows = await runInspection(handle.db, 'relay_shards');
          break;
        case 'stages':
          rows = await runInspection(handle.db, 'stage_counts', [minutes]);
          break;
        default: {
          const ids = await redriveParked(handle.db, values.all ? { all: true } : { id: argument });
          if (values.json) printJson({ redriven: ids });
          else process.stdout.write(ids.length ? `redriven: ${ids.join(', ')}\n` : 'nothing to redrive (unknown id, or already redriven)\n');
          return ids.length > 0 || values.all ? 0 : 1;
        }
      }
      if (values.json) printJson(rows);
      else printTable(rows);
      return 0;
    } finally {
      await handle.close();
    }
  },
};
