// The dimensions registry: what evalbox can score, and how. Served at GET /v1/dimensions; the
// `dimensions` of an ingest request select from it (an unknown id is a 400).
import { sql } from 'kysely';
import type { Db } from './db/index.js';
export type ScorerKind = 'HEURISTIC' | 'LLM_JUDGE';
export type Direction = 'higher_is_better' | 'lower_is_better';
export type ScoringInput = 'prompt' | 'response' | 'context' | 'reference';

export interface DimensionDefinition {
  id: string;
  name: string;
  description: string;
  /** Every value is normalised to [0, 1]. */
  scale: { min: 0; max: 1 };
  direction: Direction;
  /** Inputs without which the dimension is SKIPPED with a reason. */
  requiredInputs: ScoringInput[];
  scorerKind: ScorerKind;
  scorerName: string;
  scorerVersion: string;
  /** Fraction of evaluations scored on this dimension (1 = all). */
  samplingRate: number;
}

const heuristic = (d: Omit<DimensionDefinition, 'scale' | 'scorerKind' | 'samplingRate'>): DimensionDefinition => ({
  ...d,
  scale: { min: 0, max: 1 },
  scorerKind: 'HEURISTIC',
  samplingRate: 1,
});

export const HEURISTIC_DIMENSIONS: DimensionDefinition[] = [
  heuristic({
    id: 'groundedness',
    name: 'Groundedness (heuristic pre-filter)',
    description:
      'Share of response claims supported by the context; numbers, dates, names and negation must agree. A pre-filter: paraphrases and implied facts are beyond it (judge_faithfulness judges them).',
    direction: 'higher_is_better',
    requiredInputs: ['response', 'context'],
    scorerName: 'heuristic-groundedness',
    scorerVersion: '2',
  }),
  heuristic({
    id: 'answer_relevance',
    name: 'Answer relevance (heuristic pre-filter)',
    description:
      'Whether the response answers the question: refusals, echoes and topic changes are irrelevant; a who/how-many/how-to question needs a name, a number, an instruction. A pre-filter: it cannot tell a wrong answer of the right kind (judge_relevance can).',
    direction: 'higher_is_better',
    requiredInputs: ['prompt', 'response'],
    scorerName: 'heuristic-answer-relevance',
    scorerVersion: '2',
  }),
  heuristic({
    id: 'pii_leak',
    name: 'PII leak (heuristic pre-filter)',
    description:
      'Personal data or secrets in the response: personal e-mails, validated phone numbers, cards (Luhn and issuer), IBANs, US SSNs, addresses, birth dates, passports, API keys. A pre-filter: names alone and other national ids are not found.',
    direction: 'lower_is_better',
    requiredInputs: ['response'],
    scorerName: 'heuristic-pii',
    scorerVersion: '2',
  }),
  heuristic({
    id: 'toxicity',
    name: 'Toxicity (heuristic pre-filter)',
    description:
      'Insults, threats, slurs and dehumanising language aimed at someone, obfuscations included; technical senses and quoted speech are not abuse. A pre-filter: sarcasm and coded language are beyond it (judge_toxicity judges them).',
    direction: 'lower_is_better',
    requiredInputs: ['response'],
    scorerName: 'heuristic-toxicity',
    scorerVersion: '2',
  }),
  heuristic({
    id: 'json_validity',
    name: 'JSON validity (heuristic)',
    description: 'Whether the response is valid JSON when the prompt asks for JSON.',
    direction: 'higher_is_better',
    requiredInputs: ['prompt', 'response'],
    scorerName: 'heuristic-json',
    scorerVersion: '1',
  }),
  heuristic({
    id: 'length_band',
    name: 'Length band (heuristic)',
    description: 'Whether the response length sits in a sensible band for the prompt.',
    direction: 'higher_is_better',
    requiredInputs: ['prompt', 'response'],
    scorerName: 'heuristic-length',
    scorerVersion: '1',
  }),
];

/** Scored when a request names no dimensions. */
export const DEFAULT_DIMENSION_IDS = ['groundedness', 'answer_relevance', 'pii_leak', 'toxicity'];

export interface MissingDimension {
  id: string;
  /** Its position in the requested list. */
  index: number;
  /** What is missing, in words a client can act on. */
  detail: string;
}

export interface DimensionRegistry {
  list(): DimensionDefinition[];
  get(id: string): DimensionDefinition | undefined;
  defaults: string[];
  /** The requested ids no running scorer can score, each with why. */
  missing(ids: string[]): MissingDimension[];
  /** Looks again for ids it does not know (a scorer may have just published them). */
  lookFor(ids: string[]): Promise<void>;
}

/** The dimension ids a request body names, before it is validated. */
export function dimensionIdsIn(body: unknown): string[] {
  const named = body !== null && typeof body === 'object' ? (body as { dimensions?: unknown }).dimensions : undefined;
  return Array.isArray(named) ? named.filter((d): d is string => typeof d === 'string').slice(0, 100) : [];
}

const unknownDetail = (id: string) => `unknown dimension "${id}" (see GET /v1/dimensions; judge dimensions appear once a scorer with a judge configured runs)`;

export function createDimensionRegistry(extra: DimensionDefinition[] = [], defaults: string[] = DEFAULT_DIMENSION_IDS): DimensionRegistry {
  const byId = new Map<string, DimensionDefinition>();
  for (const d of [...HEURISTIC_DIMENSIONS, ...extra]) byId.set(d.id, d);
  for (const id of defaults) if (!byId.has(id)) throw new Error(`default dimension "${id}" is not registered`);
  return {
    list: () => [...byId.values()],
    get: (id) => byId.get(id),
    defaults: [...defaults],
    missing: (ids) => ids.flatMap((id, index) => (byId.has(id) ? [] : [{ id, index, detail: unknownDetail(id) }])),
    lookFor: async () => {},
  };
}

/** The least time between two refreshes caused by unknown ids. */
const MISS_REFRESH_MS = 250;
/** How often a running scorer re-publishes its dimensions: its heartbeat. */
export const PUBLISH_INTERVAL_MS = 15_000;
/** A published dimension not re-published for this long has no running scorer. */
export const PUBLISHED_STALE_AFTER_MS = 4 * PUBLISH_INTERVAL_MS;

/**
 * Publishes what this scorer can score, so the API accepts and lists it (judge rubrics included).
 * A running scorer calls it every PUBLISH_INTERVAL_MS: the time stamp is its heartbeat.
 */
export async function publishDimensions(db: Db, definitions: DimensionDefinition[]): Promise<void> {
  if (definitions.length === 0) return;
  await db
    .insertInto('dimensions')
    .values(definitions.map((d) => ({ id: d.id, definition: JSON.stringify(d), updated_at: sql<Date>`now()` })))
    .onConflict((oc) => oc.column('id').doUpdateSet((eb) => ({ definition: eb.ref('excluded.definition'), updated_at: sql<Date>`now()` })))
    .execute();
}

/**
 * A registry of the built-in dimensions plus those running scorers publish, refreshed every
 * `refreshMs` and, at most every 250 ms, when a request names an id it does not know — so a
 * scorer that has just started with judge rubrics is picked up by the very next request. A
 * dimension whose scorers stopped re-publishing (older than `staleAfterMs`, by the database's
 * clock) is no longer served: a request naming it is a 400 that says no running scorer offers it,
 * rather than an accepted evaluation that ends in an ERROR score. Never throws: without the
 * database it serves the built-ins.
 */
export async function createPublishedDimensionRegistry(
  db: Db,
  options: { refreshMs?: number; staleAfterMs?: number; onError?: (error: unknown) => void } = {},
): Promise<DimensionRegistry & { close(): void; refresh(): Promise<void> }> {
  const staleAfterMs = options.staleAfterMs ?? PUBLISHED_STALE_AFTER_MS;
  let current = createDimensionRegistry();
  let stale = new Map<string, Date>();
  let inFlight: Promise<void> | undefined;
  let lastStarted = 0;
  const load = async () => {
    const rows = await db
      .selectFrom('dimensions')
      .select(['id', 'definition', 'updated_at', sql<boolean>`updated_at > now() - make_interval(secs => ${staleAfterMs / 1000})`.as('live')])
      .execute();
    const builtIn = new Set(HEURISTIC_DIMENSIONS.map((d) => d.id));
    current = createDimensionRegistry(rows.filter((r) => r.live || builtIn.has(r.id)).map((r) => r.definition as unknown as DimensionDefinition));
    stale = new Map(rows.filter((r) => !r.live && !builtIn.has(r.id)).map((r) => [r.id, r.updated_at]));
  };
  // One query at a time; callers that arrive meanwhile share it.
  const refresh = async () => {
    if (!inFlight) {
      lastStarted = Date.now();
      inFlight = load().finally(() => (inFlight = undefined));
    }
    return inFlight;
  };
  // A database that is down at start leaves the built-ins; the next refresh picks the rest up.
  await refresh().catch((error) => options.onError?.(error));
  const timer = setInterval(() => void refresh().catch((error) => options.onError?.(error)), options.refreshMs ?? 30_000);
  timer.unref();
  return {
    list: () => current.list(),
    get: (id) => current.get(id),
    get defaults() {
      return current.defaults;
    },
    async lookFor(ids) {
      // Bounded: ids that stay unknown (typos, probes) cost at most four queries a second.
      if (ids.some((id) => !current.get(id)) && (inFlight || Date.now() - lastStarted >= MISS_REFRESH_MS))
        await refresh().catch((error) => options.onError?.(error));
    },
    missing(ids) {
      return ids.flatMap((id, index) => {
        if (current.get(id)) return [];
        const lastSeen = stale.get(id);
        const detail = lastSeen
          ? `no running scorer offers "${id}" (last published ${lastSeen.toISOString()}): start a scorer with a judge configured (EVALBOX_JUDGE_*)`
          : unknownDetail(id);
        return [{ id, index, detail }];
      });
    },
    refresh,
    close: () => clearInterval(timer),
  };
}
