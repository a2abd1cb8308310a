// `evalbox relay`: the composition root of the relay process. Builds the relay from the validated
// config, serves the admin port, and on SIGTERM drains, flushes, releases its leases, exits 0.
import { CONNECTION_HELP, CONNECTION_OPTIONS, parse, UsageError, type Command } from '../src/cli/args.js';
import { loadConfig, requireSetting } from '../src/config.js';
import { createDb, waitForDatabase } from '../src/db/index.js';
import { sql } from 'kysely';
import { createKafka, createTransactionalProducer, ensureTopics } from '../src/kafka.js';
import { createLogger } from '../src/logging.js';
import { Releasers, serveAdminPort, stopSignal } from '../src/lifecycle.js';
import { createRegistry } from '../src/metrics.js';
import { logRelayEvents, registerRelayMetrics } from './metrics.js';
import { createRelay, setShardCount } from './relay.js';

export const relayCommand: Command = {
  name: 'relay',
  summary: 'run the outbox relay daemon',
  help: `Usage: evalbox relay [--admin-port Q] [--wakeup notify|poll] [--shards N] ...

Publishes outbox events to Kafka in (xid, seq) order per shard, below the snapshot horizon,
each batch one Kafka transaction. Run two or more: each shard is led by one relay through a lease
in the database; a standby takes over when the leader dies. SIGTERM finishes the in-flight
batch (for at most the lease TTL, renewing the lease meanwhile), releases the leases, exits 0.

Options (flags override the environment):
  --admin-port Q        /healthz, /readyz, /metrics (env EVALBOX_ADMIN_PORT; 0 = none)
  --wakeup MODE         notify (LISTEN nudges + adaptive poll) or poll (env EVALBOX_RELAY_WAKEUP, default notify)
  --batch-size N        rows per batch (env EVALBOX_RELAY_BATCH_SIZE, default 2000)
  --poll-min-ms N       poll interval after work (env EVALBOX_RELAY_POLL_MIN_MS, default 5)
  --poll-max-ms N       poll interval ceiling when idle (env EVALBOX_RELAY_POLL_MAX_MS, default 2000)
  --lease-ttl-ms N      shard lease lifetime (env EVALBOX_RELAY_LEASE_TTL_MS, default 3000)
  --heartbeat-ms N      lease renewal period (env EVALBOX_RELAY_HEARTBEAT_MS, default 1000)
  --shards N            set the number of shards (only while nothing is pending)
  --max-shards N        most shards this relay leads (env EVALBOX_RELAY_MAX_SHARDS, default all)
  --transactional-id-prefix P   prefix of each shard producer's transactional.id
                        (env EVALBOX_RELAY_TRANSACTIONAL_ID_PREFIX, default evalbox-relay.<database name>)
  --retention-hours N   keep outbox partitions this long (env EVALBOX_OUTBOX_RETENTION_HOURS, default 72)
  --topic-events T, --topic-scores T   topics to create at start (env EVALBOX_TOPIC_EVENTS, EVALBOX_TOPIC_SCORES)
  --topic-partitions N  partitions of topics it creates (env EVALBOX_TOPIC_PARTITIONS, default 6)
${CONNECTION_HELP}`,
  async run(argv) {
    const { values } = parse(argv, {
      ...CONNECTION_OPTIONS,
      'admin-port': { type: 'string' },
      host: { type: 'string' },
      wakeup: { type: 'string' },
      'batch-size': { type: 'string' },
      'poll-min-ms': { type: 'string' },
      'poll-max-ms': { type: 'string' },
      'lease-ttl-ms': { type: 'string' },
      'heartbeat-ms': { type: 'string' },
      shards: { type: 'string' },
      'max-shards': { type: 'string' },
      'retention-hours': { type: 'string' },
      'transactional-id-prefix': { type: 'string' },
      'partitions-ahead': { type: 'string' },
      'topic-events': { type: 'string' },
      'topic-scores': { type: 'string' },
      'topic-partitions': { type: 'string' },
    });
    if (values.help) {
      process.stdout.write(`${this.help}\n`);
      return 0;
    }
    const stopped = stopSignal();
    const config = loadConfig(process.env, values);
    const int = (value: string | undefined, name: string, fallback: number): number => {
      if (value === undefined || value === '') return fallback;
      const n = Number(value);
      if (!Number.isInteger(n) || n < 1) throw new UsageError(`${name} must be a positive integer, got "${value}"`);
      return n;
    };
    const maxShards = int(values['max-shards'] ?? process.env.EVALBOX_RELAY_MAX_SHARDS, '--max-shards', Number.MAX_SAFE_INTEGER);
    const topicPartitions = int(values['topic-partitions'] ?? process.env.EVALBOX_TOPIC_PARTITIONS, '--topic-partitions', 6);
    const shards = values.shards === undefined ? undefined : int(values.shards, '--shards', 1);

    const logger = createLogger({ level: config.logLevel, name: 'evalbox-relay' });
    const databaseUrl = requireSetting(config.databaseUrl, 'DATABASE_URL');
    const brokers = requireSetting(config.kafkaBrokers, 'KAFKA_BROKERS');
    const kafka = createKafka(brokers, 'evalbox-relay', logger);
    const handle = createDb(databaseUrl, { max: 10, applicationName: 'evalbox-relay' });
    await waitForDatabase(handle, { onRetry: (error, attempt) => logger.warn({ err: error, attempt }, 'waiting for the database') });
    try {
      if (shards !== undefined) await setShardCount(handle.db, shards);
      await ensureTopics(kafka, [
        { topic: config.topics.events, numPartitions: topicPartitions },
        { topic: config.topics.scores, numPartitions: topicPartitions },
      ]);
    } catch (error) {
      await handle.close();
      throw error;
    }

    // One transactional.id per shard and outbox: a new owner of the shard fences the old one at Kafka.
    const prefix =
      config.relay.transactionalIdPrefix ||
      `evalbox-relay.${(await sql<{ name: string }>`SELECT current_database() AS name`.execute(handle.db)).rows[0]?.name ?? 'evalbox'}`;
    const registry = createRegistry('relay');
    const relay = createRelay({
      db: handle.db,
      databaseUrl,
      createProducer: (shard) => createTransactionalProducer(brokers, { transactionalId: `${prefix}.shard-${shard}`, clientId: 'evalbox-relay', logger }),
      logger,
      settings: { ...config.relay, maxShards, horizonReportAfterMs: 5_000, partitionMaintenanceMs: 10 * 60_000 },
    });
    logRelayEvents(relay.events, logger);
    const metrics = registerRelayMetrics(registry, relay.events, handle.db);
    const releasers = new Releasers();
    releasers.add(() => handle.close());
    await serveAdminPort({ config, requested: values['admin-port'] !== undefined, registry, db: handle.db, logger, releasers });
    const backlogTimer = setInterval(() => void metrics.refreshBacklog().catch((error) => logger.warn({ err: error }, 'backlog query failed')), 5_000);
    releasers.add(() => clearInterval(backlogTimer));

    await relay.start();
    releasers.add(() => relay.stop());
    logger.info({ instanceId: relay.instanceId, wakeup: config.relay.wakeup, shards: relay.ownedShards() }, 'relay started');
    const signal = await stopped;
    logger.info({ signal }, 'shutting down');
    await releasers.releaseAll();
    logger.info('stopped');
    return 0;
  },
};
