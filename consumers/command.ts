// `evalbox scorer`: the composition root of the scoring consumer. Builds the scorers (offline
// heuristics, plus the LLM judge when one is configured), the key-parallel consumer and the DLT
// producer; on SIGTERM stops fetching, drains in-flight work, commits, and exits 0.
import { CONNECTION_HELP, CONNECTION_OPTIONS, parse, UsageError, type Command } from '../src/cli/args.js';
import { loadConfig, requireSetting } from '../src/config.js';
import { createDb, waitForDatabase } from '../src/db/index.js';
import { createDimensionRegistry, publishDimensions, type DimensionDefinition } from '../src/dimensions.js';
import { createIdempotentProducer, createKafka, ensureTopics } from '../src/kafka.js';
import { createLogger } from '../src/logging.js';
import { Releasers, serveAdminPort, stopSignal } from '../src/lifecycle.js';
import { createRegistry } from '../src/metrics.js';
import { createJudge, judgeDimensionDefinitions, loadJudgeConfig, registerJudgeMetrics } from './judge/index.js';
import { registerScorerMetrics } from './metrics.js';
import { createKeyParallelConsumer, type ConsumedMessage } from './runtime.js';
import { createScoreStore } from './score-store.js';
import { createScorerEvents, deadLetterMessage, handleEvaluationMessage, type ScorerContext } from './scorer.js';
import { buildScorers, judgePressureClassifier, pauseOnJudgePressure } from './scorers.js';

/** The ordering key: the evaluation id in the event (default) or the Kafka key. */
export function orderingKeyFor(mode: 'evaluation' | 'kafka-key') {
  return (message: ConsumedMessage): string => {
    if (mode === 'kafka-key') return message.key ?? '';
    // The id sits near the start of the payload; a poison value gets its own key.
    const match = /"evaluationId"\s*:\s*"([^"]{1,100})"/.exec(message.value?.toString('utf8', 0, 512) ?? '');
    return match?.[1] ?? `offset:${message.offset}`;
  };
}

export const scorerCommand: Command = {
  name: 'scorer',
  summary: 'run the scoring consumer group',
  help: `Usage: evalbox scorer [--admin-port Q] [--group G] ...

Consumes evaluation.created events, scores every requested dimension exactly once, and writes
scores, the terminal status and an evaluation.scored outbox event in one transaction. Poison
and exhausted work goes to the DLT. Runs as many replicas as you like (one consumer group).
Without EVALBOX_JUDGE_* configuration only the offline heuristic dimensions are scored.

Options (flags override the environment):
  --admin-port Q           /healthz, /readyz, /metrics (env EVALBOX_ADMIN_PORT; 0 = none)
  --group G                consumer group (env EVALBOX_SCORER_GROUP, default evalbox-scorer)
  --ordering-key MODE      evaluation (default) or kafka-key (env EVALBOX_SCORER_ORDERING_KEY)
  --max-in-flight N        per partition before pausing it (env EVALBOX_SCORER_MAX_IN_FLIGHT, default 500)
  --max-attempts N         per dimension for retryable failures (env EVALBOX_SCORER_MAX_ATTEMPTS, default 5)
  --max-retry-age-ms N     per dimension (env EVALBOX_SCORER_MAX_RETRY_AGE_MS, default 300000)
  --retry-base-ms N        first backoff ceiling (env EVALBOX_SCORER_RETRY_BASE_MS, default 200)
  --pool-size N            database connections (env EVALBOX_SCORER_POOL_SIZE, default 20)
  --grace-ms N             drain time on SIGTERM (env EVALBOX_SCORER_GRACE_MS, default 20000)
  --topic-events T, --topic-scores T, --topic-dlt T   (env EVALBOX_TOPIC_EVENTS, _SCORES, _DLT)
Judge: EVALBOX_JUDGE_BASE_URL, EVALBOX_JUDGE_MODEL, EVALBOX_JUDGE_API_KEY or EVALBOX_JUDGE_CONFIG.
${CONNECTION_HELP}`,
  async run(argv) {
    const { values } = parse(argv, {
      ...CONNECTION_OPTIONS,
      'admin-port': { type: 'string' },
      host: { type: 'string' },
      group: { type: 'string' },
      'ordering-key': { type: 'string' },
      'max-in-flight': { type: 'string' },
      'max-attempts': { type: 'string' },
      'max-retry-age-ms': { type: 'string' },
      'retry-base-ms': { type: 'string' },
      'pool-size': { type: 'string' },
      'grace-ms': { type: 'string' },
      'topic-events': { type: 'string' },
      'topic-scores': { type: 'string' },
      'topic-dlt': { type: 'string' },
    });
    if (values.help) {
      process.stdout.write(`${this.help}\n`);
      return 0;
    }
    const stopped = stopSignal();
    const config = loadConfig(process.env, values);
    const setting = (flag: string, env: string, fallback: number): number => {
      const flagValue = (values as Record<string, unknown>)[flag];
      const raw = typeof flagValue === 'string' ? flagValue : process.env[env];
      if (raw === undefined || raw === '') return fallback;
      const n = Number(raw);
      if (!Number.isInteger(n) || n < 1) throw new UsageError(`--${flag} / ${env} must be a positive integer, got "${raw}"`);
      return n;
    };
    const orderingMode = String(values['ordering-key'] ?? process.env.EVALBOX_SCORER_ORDERING_KEY ?? 'evaluation');
    if (orderingMode !== 'evaluation' && orderingMode !== 'kafka-key')
      throw new UsageError(`--ordering-key must be evaluation or kafka-key, got "${orderingMode}"`);
    const groupId = String(values.group ?? process.env.EVALBOX_SCORER_GROUP ?? 'evalbox-scorer');
    const graceMs = setting('grace-ms', 'EVALBOX_SCORER_GRACE_MS', 20_000);

    const logger = createLogger({ level: config.logLevel, name: 'evalbox-scorer' });
    const brokers = requireSetting(config.kafkaBrokers, 'KAFKA_BROKERS');
    const handle = createDb(requireSetting(config.databaseUrl, 'DATABASE_URL'), {
      max: setting('pool-size', 'EVALBOX_SCORER_POOL_SIZE', 20),
      applicationName: 'evalbox-scorer',
    });
    await waitForDatabase(handle, { onRetry: (error, attempt) => logger.warn({ err: error, attempt }, 'waiting for the database') });
    const kafka = createKafka(brokers, 'evalbox-scorer', logger);
    const registry = createRegistry('scorer');

    const judgeConfig = loadJudgeConfig();
    const judge = judgeConfig ? createJudge({ config: judgeConfig, db: handle.db, logger }) : undefined;
    if (judge) registerJudgeMetrics(registry, judge.events);
    const judgeDimensions: DimensionDefinition[] = judgeConfig ? judgeDimensionDefinitions(judgeConfig) : [];
    const dimensions = createDimensionRegistry(judgeDimensions);
    const scorers = buildScorers(dimensions.list(), judge);
    await publishDimensions(
      handle.db,
      dimensions.list().filter((d) => scorers.has(d.id)),
    );

    await ensureTopics(kafka, [
      { topic: config.topics.events, numPartitions: 6 },
      { topic: config.topics.dlt, numPartitions: 6 },
    ]);
    const producer = createIdempotentProducer(kafka);
    await producer.connect();
    const scorerEvents = createScorerEvents();
    const store = createScoreStore(handle.db, config.topics);
    const scorerContext: ScorerContext = {
      store,
      producer,
      topics: config.topics,
      groupId,
      dimensions,
      scorers,
      logger,
      events: scorerEvents,
      isPressure: judge ? judgePressureClassifier(judge) : undefined,
      retry: {
        baseMs: setting('retry-base-ms', 'EVALBOX_SCORER_RETRY_BASE_MS', 200),
        maxMs: 30_000,
        maxAttempts: setting('max-attempts', 'EVALBOX_SCORER_MAX_ATTEMPTS', 5),
        maxAgeMs: setting('max-retry-age-ms', 'EVALBOX_SCORER_MAX_RETRY_AGE_MS', 300_000),
      },
    };
    const consumer = createKeyParallelConsumer({
      brokers,
      groupId,
      topics: [config.topics.events],
      orderingKeyOf: orderingKeyFor(orderingMode),
      maxInFlightPerPartition: setting('max-in-flight', 'EVALBOX_SCORER_MAX_IN_FLIGHT', 500),
      commitIntervalMs: 500,
      logger,
      handle: (message, signal) => handleEvaluationMessage(scorerContext, message, signal),
      deadLetter: (message, error) => deadLetterMessage(scorerContext, message, error),
    });
    consumer.events.on('consumer:assigned', (tps) => logger.info({ partitions: tps }, 'partitions assigned'));
    consumer.events.on('consumer:revoked', (tps) => logger.info({ partitions: tps }, 'partitions revoked'));
    consumer.events.on('consumer:handlerFailed', ({ topic, partition, offset, error, attempt }) =>
      logger.warn({ topic, partition, offset, attempt, err: error }, 'handler failed; retrying'),
    );
    const metrics = registerScorerMetrics(registry, groupId, consumer, scorerEvents, consumer.events);
    if (judge) pauseOnJudgePressure(judge, consumer);

    const releasers = new Releasers();
    releasers.add(() => handle.close());
    releasers.add(() => judge?.close());
    releasers.add(() => producer.disconnect());
    await serveAdminPort({ config, requested: values['admin-port'] !== undefined, registry, db: handle.db, logger, releasers });
    const lagTimer = setInterval(() => void metrics.refreshLag().catch((error) => logger.warn({ err: error }, 'lag query failed')), 5_000);
    releasers.add(() => clearInterval(lagTimer));

    await consumer.start();
    releasers.add(() => consumer.stop(graceMs));
    logger.info({ groupId, topic: config.topics.events, dimensions: [...scorers.keys()], judge: Boolean(judge) }, 'scorer started');
    const signal = await stopped;
    logger.info({ signal }, 'shutting down');
    await releasers.releaseAll();
    logger.info('stopped');
    return 0;
  },
};
