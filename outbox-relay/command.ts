// `evalbox relay`: the composition root of the relay process. Builds the relay from the validated
// config, serves the admin port, and on SIGTERM drains, flushes, releases its leases, exits 0.
import { CONNECTION_HELP, UsageError, type Command } from '../src/cli/args.js';
import { requireSetting, optionsHelp } from '../src/config.js';
import { createDb, waitForDatabase } from '../src/db/index.js';
import { sql } from 'kysely';
import { createKafka, createTransactionalProducer, ensureTopics } from '../src/kafka.js';
import { createRegistry } from '../src/metrics.js';
import { startProcess } from '../src/process.js';
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

Options (flags override the environment, which overrides the file EVALBOX_CONFIG_FILE):
  --shards N            set the number of shards (only while nothing is pending)
${optionsHelp('relay')}
${CONNECTION_HELP}`,
  async run(argv) {
    const running = await startProcess(this, argv, 'relay', { extraFlags: { shards: { type: 'string' } } });
    if (!running) return 0;
    const { values, config, logger, releasers } = running;
    const int = (value: string | boolean | undefined, name: string, fallback: number): number => {
      if (value === undefined || value === '') return fallback;
      const n = Number(value);
      if (!Number.isInteger(n) || n < 1) throw new UsageError(`${name} must be a positive integer, got "${String(value)}"`);
      return n;
    };
    const { maxShards, topicPartitions } = config.relay;
    const shards = values.shards === undefined ? undefined : int(values.shards, '--shards', 1);

    const databaseUrl = requireSetting(config.databaseUrl, 'DATABASE_URL');
    const brokers = requireSetting(config.kafkaBrokers, 'KAFKA_BROKERS');
    const kafka = createKafka(brokers, 'evalbox-relay', logger);
    // A relay paused inside its cursor update would otherwise keep its lease row locked (no standby
    // could claim the shard) and the horizon held for as long as it stays paused: past its lease
    // it is a zombie, and the database ends its transaction.
    const handle = createDb(databaseUrl, {
      max: 10,
      applicationName: 'evalbox-relay',
      statementTimeoutMs: config.relay.statementTimeoutMs,
      idleInTransactionTimeoutMs: Math.max(1000, config.relay.leaseTtlMs),
      keepAlive: true,
    });
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
    releasers.add(() => handle.close());
    await running.serveAdmin(registry, handle.db);
    // Only a relay that leads a shard counts the backlog: standbys would repeat the same scans.
    const refreshBacklog = () => (relay.ownedShards().length > 0 ? metrics.refreshBacklog() : Promise.resolve(metrics.clearBacklog()));
    const backlogTimer = setInterval(() => void refreshBacklog().catch((error) => logger.warn({ err: error }, 'backlog query failed')), 5_000);
    releasers.add(() => clearInterval(backlogTimer));

    await relay.start();
    releasers.add(() => relay.stop());
    logger.info({ instanceId: relay.instanceId, wakeup: config.relay.wakeup, shards: relay.ownedShards() }, 'relay started');
    return running.untilStopped();
  },
};
