// Scorer test helpers: evaluations written to the test database and their evaluation.created
// events produced to a test topic, and an in-process scorer with injectable scorers.
import { EventEmitter } from 'node:events';
import { cloudEventHeaders } from '../src/cloudevents.js';
import type { Topics } from '../src/config.js';
import { createDimensionRegistry, type DimensionDefinition } from '../src/dimensions.js';
import { uuidv7 } from '../src/ids.js';
import { createIdempotentProducer, createKafka, ensureTopics, type Producer } from '../src/kafka.js';
import { silentLogger } from '../src/logging.js';
import { EVENT_SCHEMA_VERSION, type EvaluationCreatedData } from '../src/schemas/events.js';
import { createKeyParallelConsumer, type KeyParallelConsumer } from '../consumers/runtime.js';
import {
  createScorerEvents,
  deadLetterMessage,
  handleEvaluationMessage,
  type Scorer,
  type ScorerContext,
  type ScorerEvents,
  type ScoreRow,
} from '../consumers/scorer.js';
import { buildScorers, pauseOnJudgePressure } from '../consumers/scorers.js';
import type { Judge } from '../consumers/judge/index.js';
import { createScoreStore, type ScoreStore } from '../consumers/score-store.js';
import { orderingKeyFor } from '../consumers/command.js';
import { afterAll, afterEach, beforeAll } from '@jest/globals';
import { startFakeJudge, type FakeJudge } from '../src/fake-judge/server.js';
import { createTestDatabase, kafkaBrokers, uniqueName, type TestDatabase } from './helpers.js';

export async function createTopics(partitions = 1): Promise<Topics> {
  const base = uniqueName('scorer');
  const topics = { events: `${base}.events`, scores: `${base}.scores`, dlt: `${base}.events.DLT` };
  await ensureTopics(createKafka(kafkaBrokers(), 'evalbox-test-admin'), [
    { topic: topics.events, numPartitions: partitions },
    { topic: topics.dlt, numPartitions: 1 },
  ]);
  return topics;
}

export async function testProducer(): Promise<Producer> {
  const producer = createIdempotentProducer(createKafka(kafkaBrokers(), 'evalbox-test-producer'));
  await producer.connect();
  return producer;
}

/** Inserts an evaluation row and returns its evaluation.created event (not yet produced). */
export async function createEvaluation(database: TestDatabase, dimensions: string[], overrides: Partial<EvaluationCreatedData> = {}) {
  const id = uuidv7();
  const data: EvaluationCreatedData = {
    schemaVersion: EVENT_SCHEMA_VERSION,
    evaluationId: id,
    applicationId: 'app-1',
    modelId: 'm',
    prompt: 'What is the capital of France?',
    response: 'The capital of France is Paris.',
    context: ['Paris is the capital of France.'],
    reference: null,
    metadata: {},
    dimensions,
    createdAt: new Date().toISOString(),
    ...overrides,
  };
  await database.db
    .insertInto('evaluations')
    .values({
      id,
      application_id: data.applicationId,
      model_id: data.modelId,
      prompt: data.prompt,
      response: data.response,
      context: JSON.stringify(data.context),
      metadata: '{}',
      dimensions,
    })
    .execute();
  return data;
}

export async function produceEvent(producer: Producer, topic: string, data: EvaluationCreatedData | string, eventId = uuidv7()): Promise<void> {
  const value = typeof data === 'string' ? data : JSON.stringify(data);
  const key = typeof data === 'string' ? 'app-1' : data.applicationId;
  await producer.send({
    topic,
    messages: [{ key, value, headers: cloudEventHeaders({ id: eventId, type: 'evaluation.created', source: '/test', time: new Date().toISOString() }) }],
  });
}

export interface Harness {
  consumer: KeyParallelConsumer;
  events: EventEmitter<ScorerEvents>;
  stop(): Promise<void>;
}

export async function startScorer(
  database: TestDatabase,
  topics: Topics,
  options: {
    scorers?: Map<string, Scorer>;
    maxAttempts?: number;
    maxAgeMs?: number;
    maxInFlight?: number;
    groupId?: string;
    producer: Producer;
    extraDimensions?: DimensionDefinition[];
    isPressure?: (error: unknown) => boolean;
    wrapStore?: (store: ScoreStore) => ScoreStore;
    judge?: Judge;
  },
): Promise<Harness> {
  const dimensions = createDimensionRegistry(options.extraDimensions);
  const scorers = buildScorers(dimensions.list());
  for (const [dimension, scorer] of options.scorers ?? []) scorers.set(dimension, scorer);
  const events = createScorerEvents();
  const store = (options.wrapStore ?? ((s: ScoreStore) => s))(createScoreStore(database.db, topics));
  const groupId = options.groupId ?? uniqueName('scorer-group');
  const context: ScorerContext = {
    store,
    producer: options.producer,
    topics,
    groupId,
    dimensions,
    scorers,
    logger: silentLogger(),
    events,
    isPressure: options.isPressure,
    retry: { baseMs: 20, maxMs: 100, maxAttempts: options.maxAttempts ?? 3, maxAgeMs: options.maxAgeMs ?? 60_000 },
  };
  const consumer = createKeyParallelConsumer({
    brokers: kafkaBrokers(),
    groupId,
    topics: [topics.events],
    orderingKeyOf: orderingKeyFor('evaluation'),
    maxInFlightPerPartition: options.maxInFlight ?? 200,
    commitIntervalMs: 200,
    logger: silentLogger(),
    handle: (message, signal) => handleEvaluationMessage(context, message, signal),
    deadLetter: (message, error) => deadLetterMessage(context, message, error),
  });
  if (options.judge) pauseOnJudgePressure(options.judge, consumer);
  await consumer.start();
  return { consumer, events, stop: () => consumer.stop(5_000) };
}

/** What the tests of one scorer file share: a database, a producer and the harness under test. */
export interface ScorerSuite {
  database: TestDatabase;
  producer: Producer;
  harness: Harness | undefined;
}

/**
 * Registers the hooks a scorer test file repeats: a database and a producer for the file, the
 * harness stopped after each test (or once, after all), everything torn down at the end.
 */
export function scorerSuite(options: { max?: number; stopHarness?: 'afterEach' | 'afterAll' } = {}): ScorerSuite {
  const suite = { harness: undefined } as ScorerSuite;
  const stopHarness = async () => {
    await suite.harness?.stop();
    suite.harness = undefined;
  };
  beforeAll(async () => {
    suite.database = await createTestDatabase({ max: options.max ?? 10 });
    suite.producer = await testProducer();
  });
  if ((options.stopHarness ?? 'afterEach') === 'afterEach') afterEach(stopHarness);
  afterAll(async () => {
    await stopHarness();
    await suite.producer.disconnect();
    await suite.database.drop();
  });
  return suite;
}

/** A scorer suite with a fake judge over real HTTP, and the judge under test closed after each test. */
export interface JudgeScorerSuite extends ScorerSuite {
  fake: FakeJudge;
  /** The judge the current test created; closed (after the harness stops) when the test ends. */
  judge: Judge | undefined;
}

/**
 * scorerSuite plus a fake judge for the file: after each test the harness stops, the test's
 * judge closes, and the fake judge is back to answering every request normally, its counts reset.
 */
export function judgeScorerSuite(options: { max?: number; latencyMs: number }): JudgeScorerSuite {
  const suite = scorerSuite({ ...(options.max ? { max: options.max } : {}), stopHarness: 'afterAll' }) as JudgeScorerSuite;
  beforeAll(async () => {
    suite.fake = await startFakeJudge({ latencyMs: options.latencyMs });
  });
  afterEach(async () => {
    await suite.harness?.stop();
    suite.harness = undefined;
    await suite.judge?.close();
    suite.judge = undefined;
    suite.fake.control({ mode: 'ok', sequence: [], scripted: [] });
    suite.fake.resetStats();
  });
  afterAll(async () => suite.fake.close());
  return suite;
}

/** A COMPLETED heuristic score of 0.5 for `dimension`, as a test scorer returns it. */
export const completedScoreRow = (dimension: string, version = '1'): ScoreRow => ({
  dimension,
  status: 'COMPLETED',
  value: 0.5,
  label: null,
  raw_value: null,
  direction: 'lower_is_better',
  reasoning: 'test',
  source: 'HEURISTIC',
  scorer_name: `test-${dimension}`,
  scorer_version: version,
  error_code: null,
});
