// `evalbox scorer`: the composition root of the scoring consumer. Builds the scorers (offline
// heuristics, plus the LLM judge when one is configured), the key-parallel consumer and the DLT
// producer; on SIGTERM stops fetching, drains in-flight work, commits, and exits 0.
import { CONNECTION_HELP, type Command } from '../src/cli/args.js';
import { requireSetting, optionsHelp } from '../src/config.js';
import { createDb, waitForDatabase } from '../src/db/index.js';
import { createDimensionRegistry, publishDimensions, PUBLISH_INTERVAL_MS, type DimensionDefinition } from '../src/dimensions.js';
import { createIdempotentProducer, createKafka, ensureTopics } from '../src/kafka.js';
import { createRegistry } from '../src/metrics.js';
import { startProcess } from '../src/process.js';
import { createJudge, judgeDimensionDefinitions, loadJudgeConfig, registerJudgeMetrics } from './judge/index.js';
import { registerScorerMetrics } from './metrics.js';
import { createKeyParallelConsumer, type ConsumedMessage } from './runtime.js';
import { createScoreStore } from './score-store.js';
import { createScorerEvents, deadLetterMessage, handleEvaluationMessage, type ScorerContext } from './scorer.js';
import { buildScorers, judgePressureClassifier, pauseOnJudgePressure } from './scorers.js';
import { applyScoringModes, createCascadeEvents, loadCascadeConfig, registerCascadeMetrics } from './cascade.js';

/** The longest wait between attempts at a message whose handler failed for a passing reason. */
const HANDLER_RETRY_MAX_MS = 10_000;

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

Options (flags override the environment, which overrides the file EVALBOX_CONFIG_FILE):
${optionsHelp('scorer')}
Judge: EVALBOX_JUDGE_BASE_URL, EVALBOX_JUDGE_MODEL, EVALBOX_JUDGE_API_KEY or EVALBOX_JUDGE_CONFIG.
Who scores groundedness, answer_relevance and toxicity when a judge is configured:
  EVALBOX_SCORING_MODES      heuristic (default), judge, cascade, or per dimension,
                             e.g. groundedness=cascade,toxicity=judge
  EVALBOX_CASCADE_CONFIDENCE offline verdicts at or above it stand (default 0.8)
  EVALBOX_CASCADE_AUDIT_RATE share of confident verdicts also sent to the judge (default 0)
${CONNECTION_HELP}`,
  async run(argv) {
    // The scorer's --pool-size is its own pool, not the API's.
    const running = await startProcess(this, argv, 'scorer', {
      configFlags: (values) => ({ ...values, 'pool-size': undefined, 'scorer-pool-size': values['pool-size'] }),
    });
    if (!running) return 0;
    const { config, logger, releasers } = running;
    const { scorer } = config;
    const orderingMode = scorer.orderingKey;
    const groupId = scorer.group;
    const graceMs = scorer.graceMs;

    const brokers = requireSetting(config.kafkaBrokers, 'KAFKA_BROKERS');
    const handle = createDb(requireSetting(config.databaseUrl, 'DATABASE_URL'), {
      max: scorer.poolSize,
      applicationName: 'evalbox-scorer',
      idleInTransactionTimeoutMs: scorer.idleInTransactionTimeoutMs,
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
    const cascadeEvents = createCascadeEvents();
    const cascade = loadCascadeConfig(process.env, judge);
    applyScoringModes(scorers, dimensions.list(), judge ? { judge, config: cascade, events: cascadeEvents } : undefined);
    registerCascadeMetrics(registry, cascadeEvents);
    const offered = dimensions.list().filter((d) => scorers.has(d.id));
    await publishDimensions(handle.db, offered);
    // The heartbeat: the API stops accepting a dimension whose scorers stopped re-publishing it.
    const heartbeat = setInterval(
      () => void publishDimensions(handle.db, offered).catch((error) => logger.warn({ err: error }, 'publishing dimensions failed')),
      PUBLISH_INTERVAL_MS,
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
        baseMs: scorer.retryBaseMs,
        maxMs: 30_000,
        maxAttempts: scorer.maxAttempts,
        maxAgeMs: scorer.maxRetryAgeMs,
      },
    };
    const consumer = createKeyParallelConsumer({
      brokers,
      groupId,
      topics: [config.topics.events],
      orderingKeyOf: orderingKeyFor(orderingMode),
      maxInFlightPerPartition: scorer.maxInFlight,
      commitIntervalMs: 500,
      retry: { baseMs: scorer.retryBaseMs, maxMs: HANDLER_RETRY_MAX_MS },
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

    releasers.add(() => handle.close());
    releasers.add(() => clearInterval(heartbeat));
    releasers.add(() => judge?.close());
    releasers.add(() => producer.disconnect());
    await running.serveAdmin(registry, handle.db);
    const lagTimer = setInterval(() => void metrics.refreshLag().catch((error) => logger.warn({ err: error }, 'lag query failed')), 5_000);
    releasers.add(() => clearInterval(lagTimer));

    await consumer.start();
    releasers.add(() => consumer.stop(graceMs));
    logger.info({ groupId, topic: config.topics.events, dimensions: [...scorers.keys()], judge: Boolean(judge), modes: cascade.modes }, 'scorer started');
    return running.untilStopped();
  },
};
