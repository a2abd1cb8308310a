// The ordered list of migrations. Append only; a landed migration is never edited.
import type { Migration } from 'kysely';
import * as m0001 from './0001_initial.js';
import * as m0002 from './0002_evaluation_xid.js';
import * as m0006 from './0006_judge_cache.js';

export const migrations: Record<string, Migration> = {
  '0001_initial': m0001,
  '0002_evaluation_xid': m0002,
  '0006_judge_cache': m0006,
};
