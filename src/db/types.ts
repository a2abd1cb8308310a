// Kysely table types for the schema in db/migrations.
import type { ColumnType, Generated } from 'kysely';

export type EvaluationStatus = 'PENDING' | 'SCORED' | 'PARTIALLY_SCORED' | 'SCORING_FAILED';
export type ScoreStatus = 'PENDING' | 'COMPLETED' | 'SKIPPED' | 'ERROR';
/** Who produced a score: evalbox's scorers, or a person or the client application (the API). */
export type ScoreSource = 'LLM_JUDGE' | 'HEURISTIC' | 'HUMAN' | 'CLIENT';

type Timestamp = ColumnType<Date, Date | string | undefined, Date | string>;
type Json<T = unknown> = ColumnType<T, string, string>;

export interface ApiKeysTable {
  id: string;
  application_id: string;
  key_hash: Buffer;
  prefix: string;
  created_at: Timestamp;
  revoked_at: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
}

export interface EvaluationsTable {
  id: string;
  application_id: string;
  model_id: string | null;
  prompt: string;
  response: string;
  context: Json<string | string[] | null> | null;
  reference: string | null;
  metadata: Json<Record<string, unknown>>;
  dimensions: string[];
  status: ColumnType<EvaluationStatus, EvaluationStatus | undefined, EvaluationStatus>;
  idempotency_key: string | null;
  external_id: string | null;
  request_fingerprint: Buffer | null;
  xid: Generated<string>;
  /** The transaction that last decided the result (set by a trigger); NULL while PENDING. */
  scored_xid: Generated<string | null>;
  created_at: Timestamp;
  scored_at: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
  messages: Json<unknown[] | null> | null;
  tags: string[] | null;
  session_id: string | null;
  user_id: string | null;
  call_input_tokens: number | null;
  call_output_tokens: number | null;
  call_latency_ms: number | null;
  call_cost_usd: ColumnType<string | null, string | number | null | undefined, string | number | null>;
}

export interface EvaluationDeletionsTable {
  evaluation_id: string;
  application_id: string;
  deleted_at: Timestamp;
}

export interface ScoresTable {
  evaluation_id: string;
  dimension: string;
  value: number | null;
  label: string | null;
  raw_value: number | null;
  direction: 'higher_is_better' | 'lower_is_better' | null;
  reasoning: string | null;
  source: ScoreSource;
  scorer_name: string;
  scorer_version: string;
  judge_model: string | null;
  prompt_hash: string | null;
  status: ScoreStatus;
  error_code: string | null;
  attempts: ColumnType<number, number | undefined, number>;
  input_tokens: number | null;
  output_tokens: number | null;
  latency_ms: number | null;
  cost_usd: ColumnType<string | null, string | number | null | undefined, string | number | null>;
  cache_hit: ColumnType<boolean, boolean | undefined, boolean>;
  created_at: Timestamp;
  updated_at: Timestamp;
}

/** The columns an outbox row and its parked copy share. */
interface OutboxEventColumns {
  id: string;
  shard: number;
  topic: string;
  key: string;
  type: string;
  source: string;
  headers: Json<Record<string, string>>;
  payload: Json<unknown>;
  created_at: Timestamp;
}

export interface OutboxTable extends OutboxEventColumns {
  seq: Generated<string>;
  xid: Generated<string>;
}

export interface OutboxSettingsTable {
  singleton: Generated<boolean>;
  shards: number;
}

export interface RelayLeasesTable {
  shard: number;
  owner: string | null;
  epoch: ColumnType<string, string | number | undefined, string | number>;
  expires_at: Timestamp;
  cursor_xid: ColumnType<string, string | undefined, string>;
  cursor_seq: ColumnType<string, string | number | undefined, string | number>;
  published_at: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
}

export interface OutboxParkedTable extends OutboxEventColumns {
  seq: string;
  xid: string;
  error_code: string;
  error_message: string;
  parked_at: Timestamp;
  redriven_at: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
}

export interface DimensionsTable {
  id: string;
  definition: Json<Record<string, unknown>>;
  updated_at: ColumnType<Date, Date | string | undefined, Date | string>;
}

export interface Database {
  dimensions: DimensionsTable;
  api_keys: ApiKeysTable;
  evaluations: EvaluationsTable;
  evaluation_deletions: EvaluationDeletionsTable;
  scores: ScoresTable;
  outbox: OutboxTable;
  outbox_settings: OutboxSettingsTable;
  relay_leases: RelayLeasesTable;
  outbox_parked: OutboxParkedTable;
}
