// `evalbox outbox …`: the inspection questions of db/inspect/*.sql as readable tables (or JSON),
// and redrive of parked rows.
import { loadConfig, requireSetting } from '../config.js';
import { createDb } from '../db/index.js';
import { CONNECTION_HELP, CONNECTION_OPTIONS, parse, printJson, printTable, UsageError, type Command } from './args.js';
import {
  backlog,
  horizonBlocker,
  keyHistory,
  oldestPending,
  parkedRows,
  publishThroughput,
  redriveParked,
  relayShards,
  stageCounts,
} from './outbox-queries.js';

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
          rows = await backlog(handle.db);
          break;
        case 'oldest':
          rows = await oldestPending(handle.db, limit);
          break;
        case 'throughput':
          rows = await publishThroughput(handle.db, minutes);
          break;
        case 'horizon':
          rows = await horizonBlocker(handle.db);
          break;
        case 'key':
          rows = await keyHistory(handle.db, argument as string, limit);
          break;
        case 'parked':
          rows = await parkedRows(handle.db, limit);
          break;
        case 'shards':
          rows = await relayShards(handle.db);
          break;
        case 'stages':
          rows = await stageCounts(handle.db, minutes);
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
