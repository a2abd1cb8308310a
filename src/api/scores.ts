// Scores from outside evalbox (a person's feedback, a score the client computed) and deletion:
// the API's writes to an existing evaluation. Each takes the evaluation's row lock first — the
// lock the scorer's final write takes too — so a score or a deletion and a scorer finishing at
// the same moment are serialised: the scorer either finished before (its result is then deleted
// with the rest) or finds the row gone and writes nothing.
import { sql, type Selectable } from 'kysely';
import type { Topics as AllTopics } from '../config.js';
import type { Db } from '../db/index.js';
import { upsertScores } from '../db/scores.js';
import type { ScoresTable } from '../db/types.js';
import { EVENT_TYPES, insertOutboxEvents, type OutboxEvent } from '../events.js';
import { EVENT_SCHEMA_VERSION, isClientScore, toScoreResult, type EvaluationClientScoredData, type EvaluationDeletedData } from '../schemas/events.js';
import type { ClientScoreInput } from '../schemas/evaluation-request.js';
import { ProblemError } from './problem.js';
import { EVENT_SOURCE } from './evaluations.js';
import { UUID } from './queries.js';

type Topics = Pick<AllTopics, 'events' | 'scores'>;

export type StoredScore = Selectable<ScoresTable>;

/**
 * Upserts the scores on (evaluation_id, dimension) and publishes an evaluation.client_scored
 * event on the results topic, in one transaction. Undefined when the evaluation does not exist
 * (or is another application's). A dimension whose row an evalbox scorer wrote is refused (409):
 * the row belongs to its scorer and the evaluation's status is computed from it.
 */
export async function recordClientScores(
  db: Db,
  input: { applicationId: string; evaluationId: string; scores: ClientScoreInput[]; topics: Topics; now: Date },
): Promise<StoredScore[] | undefined> {
  if (!UUID.test(input.evaluationId)) return undefined;
  // The last of two entries for one dimension wins, as it would in two requests.
  const byDimension = new Map(input.scores.map((s) => [s.dimension, s]));
  return db.transaction().execute(async (trx) => {
    const evaluation = await trx
      .selectFrom('evaluations')
      .select(['id', 'dimensions'])
      .where('id', '=', input.evaluationId)
      .where('application_id', '=', input.applicationId)
      .forUpdate()
      .executeTakeFirst();
    if (!evaluation) return undefined;
    const theirs = [...byDimension.keys()].filter((d) => evaluation.dimensions.includes(d));
    if (theirs.length > 0) throw scoredByEvalbox(theirs);
    const rows = [...byDimension.values()].map((s) => ({
      evaluation_id: input.evaluationId,
      dimension: s.dimension,
      status: 'COMPLETED' as const,
      value: s.value ?? null,
      label: s.label ?? null,
      raw_value: null,
      direction: s.direction ?? null,
      reasoning: s.reasoning ?? null,
      source: s.source,
      scorer_name: s.scorerName ?? s.source.toLowerCase(),
      scorer_version: s.scorerVersion ?? '1',
      judge_model: null,
      prompt_hash: null,
      error_code: null,
      attempts: 0,
    }));
    // Never over a row an evalbox scorer wrote (a dimension the evaluation did not request).
    const stored = await upsertScores(trx, rows, sql<boolean>`scores.source IN ('HUMAN', 'CLIENT')`)
      .returningAll()
      .execute();
    if (stored.length < rows.length) {
      const written = new Set(stored.map((s) => s.dimension));
      throw scoredByEvalbox(rows.map((r) => r.dimension).filter((d) => !written.has(d)));
    }
    const data: EvaluationClientScoredData = {
      schemaVersion: EVENT_SCHEMA_VERSION,
      evaluationId: input.evaluationId,
      applicationId: input.applicationId,
      scores: stored.map(toScoreResult).filter(isClientScore), // all of them: the statement writes only HUMAN and CLIENT rows
      recordedAt: input.now.toISOString(),
    };
    await insertOutboxEvents(trx, [
      { topic: input.topics.scores, key: input.applicationId, type: EVENT_TYPES.evaluationClientScored, source: EVENT_SOURCE, data },
    ]);
    return stored.sort((a, b) => a.dimension.localeCompare(b.dimension));
  });
}

function scoredByEvalbox(dimensions: string[]): ProblemError {
  return new ProblemError(409, `evalbox's scorers own the score of ${dimensions.map((d) => `"${d}"`).join(', ')} for this evaluation`, {
    errors: dimensions.slice(0, 20).map((d) => ({ pointer: '/scores', detail: `"${d}" is scored by evalbox; name your score differently` })),
  });
}

/**
 * Deletes an evaluation (its scores and redrive records go with it, ON DELETE CASCADE), records a
 * tombstone, and publishes evaluation.deleted on both topics, in one transaction. False when
 * there was nothing to delete. The DELETE takes the row lock itself: it waits for a scorer that
 * holds it and then deletes what that scorer wrote; a scorer arriving later finds no row.
 */
export async function deleteEvaluation(db: Db, input: { applicationId: string; evaluationId: string; topics: Topics; now: Date }): Promise<boolean> {
  if (!UUID.test(input.evaluationId)) return false;
  return db.transaction().execute(async (trx) => {
    const deleted = await trx
      .deleteFrom('evaluations')
      .where('id', '=', input.evaluationId)
      .where('application_id', '=', input.applicationId)
      .returning('id')
      .executeTakeFirst();
    if (!deleted) return false;
    await trx.insertInto('evaluation_deletions').values({ evaluation_id: input.evaluationId, application_id: input.applicationId }).execute();
    const data: EvaluationDeletedData = {
      schemaVersion: EVENT_SCHEMA_VERSION,
      evaluationId: input.evaluationId,
      applicationId: input.applicationId,
      deletedAt: input.now.toISOString(),
    };
    const event = (topic: string): OutboxEvent => ({ topic, key: input.applicationId, type: EVENT_TYPES.evaluationDeleted, source: EVENT_SOURCE, data });
    await insertOutboxEvents(trx, [event(input.topics.events), event(input.topics.scores)]);
    return true;
  });
}
