// The ordered list of migrations. Append only; a landed migration is never edited.
import type { Migration } from 'kysely';
import * as m0001 from './0001_initial.js';
import * as m0002 from './0002_evaluation_xid.js';
import * as m0003 from './0003_judge_cache.js';
import * as m0004 from './0004_dimensions.js';
import * as m0005 from './0005_outbox_read_batch.js';
import * as m0007 from './0007_ingest_wakeup_idempotency.js';
import * as m0009 from './0009_redrives_and_judge_cache_scope.js';
import * as m0010 from './0010_api_results_scores_deletion_input.js';
import * as m0011 from './0011_outbox_generations.js';
import * as m0012 from './0012_evaluations_created_at.js';
import * as m0013 from './0013_outbox_read_batch_cached_plan.js';

export const migrations: Record<string, Migration> = {
  '0001_initial': m0001,
  '0002_evaluation_xid': m0002,
  '0003_judge_cache': m0003,
  '0004_dimensions': m0004,
  '0005_outbox_read_batch': m0005,
  '0007_ingest_wakeup_idempotency': m0007,
  '0009_redrives_and_judge_cache_scope': m0009,
  '0010_api_results_scores_deletion_input': m0010,
  '0011_outbox_generations': m0011,
  '0012_evaluations_created_at': m0012,
  '0013_outbox_read_batch_cached_plan': m0013,
};
