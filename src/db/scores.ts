// The score upsert on (evaluation_id, dimension): the one place its column list is spelt out.
// Writers differ only in when a stored row may be replaced, which each passes as the guard (the
// scorer: never over a COMPLETED result; the API: only over a person's or a client's score).
import { sql, type Insertable, type RawBuilder, type Transaction } from 'kysely';
import type { Database, ScoresTable } from './types.js';

/** INSERT … ON CONFLICT DO UPDATE … WHERE `replaceWhen`; attempts add up, the rest is replaced. */
export function upsertScores(trx: Transaction<Database>, rows: Insertable<ScoresTable>[], replaceWhen: RawBuilder<boolean>) {
  return trx
    .insertInto('scores')
    .values(rows)
    .onConflict((oc) =>
      oc
        .columns(['evaluation_id', 'dimension'])
        .doUpdateSet((eb) => ({
          status: eb.ref('excluded.status'),
          value: eb.ref('excluded.value'),
          label: eb.ref('excluded.label'),
          raw_value: eb.ref('excluded.raw_value'),
          direction: eb.ref('excluded.direction'),
          reasoning: eb.ref('excluded.reasoning'),
          source: eb.ref('excluded.source'),
          scorer_name: eb.ref('excluded.scorer_name'),
          scorer_version: eb.ref('excluded.scorer_version'),
          judge_model: eb.ref('excluded.judge_model'),
          prompt_hash: eb.ref('excluded.prompt_hash'),
          error_code: eb.ref('excluded.error_code'),
          attempts: sql<number>`scores.attempts + excluded.attempts`,
          input_tokens: eb.ref('excluded.input_tokens'),
          output_tokens: eb.ref('excluded.output_tokens'),
          latency_ms: eb.ref('excluded.latency_ms'),
          cost_usd: eb.ref('excluded.cost_usd'),
          cache_hit: eb.ref('excluded.cache_hit'),
          updated_at: sql<Date>`now()`,
        }))
        .where(replaceWhen),
    );
}
