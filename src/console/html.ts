// HTML building blocks of the console. Every page is built with hono's `html` tag, which escapes
// each interpolated value; nothing untrusted is ever passed through `raw`. Numbers that answer an
// operator's question link to the source page that names the CLI command and SQL file giving them.
import { html, raw } from 'hono/html';
import type { Viewer } from './auth.js';

export type Html = ReturnType<typeof html>;
export { html, raw };

export interface Source {
  title: string;
  /** The CLI command that prints the same figure. */
  cli: string;
  /** db/inspect/<sql>.sql, when the figure comes from one. */
  sql?: 'backlog' | 'stage_counts' | 'relay_shards' | 'horizon_blocker' | 'parked' | 'throughput' | 'oldest';
  how: string;
}

export const SOURCES: Record<string, Source> = {
  stages: {
    title: 'Counts per stage',
    cli: 'evalbox outbox stages --minutes 15',
    sql: 'stage_counts',
    how: 'Accepted evaluations, evaluation.created events published, evaluations scored, evaluation.scored results published and outbox rows parked, per minute.',
  },
  backlog: {
    title: 'Outbox backlog',
    cli: 'evalbox outbox backlog',
    sql: 'backlog',
    how: 'Outbox events past their shard cursor (not yet published) and the age of the oldest one, per topic. Metrics: evalbox_outbox_backlog_events, evalbox_outbox_oldest_pending_age_seconds.',
  },
  oldest: {
    title: 'Oldest pending events',
    cli: 'evalbox outbox oldest',
    sql: 'oldest',
    how: 'The oldest unpublished events and whether the snapshot horizon still hides them from the relay.',
  },
  shards: {
    title: 'Relay shards',
    cli: 'evalbox outbox shards',
    sql: 'relay_shards',
    how: 'Per shard: the relay whose lease is live, the lease epoch, the published cursor (xid, seq) and when the cursor last moved. Metric: evalbox_relay_shard_leader.',
  },
  horizon: {
    title: 'Horizon blocker',
    cli: 'evalbox outbox horizon',
    sql: 'horizon_blocker',
    how: 'The backend whose open transaction holds the snapshot horizon back; the relay cannot read outbox rows committed after it started.',
  },
  parked: {
    title: 'Parked outbox rows',
    cli: 'evalbox outbox parked',
    sql: 'parked',
    how: 'Rows the relay could not publish for a permanent reason. Redrive: evalbox outbox redrive ID | --all.',
  },
  dlt: {
    title: 'Dead letters',
    cli: 'evalbox dlt list',
    how: 'Records on the dead-letter topic, read from the earliest offset. Redrive: evalbox dlt redrive --id REF | --all. Counts in a window come from the topic offsets by timestamp (Kafka admin API). Metric: evalbox_scorer_dlt_records_total.',
  },
  lag: {
    title: 'Consumer lag',
    cli: 'kafka-consumer-groups.sh --describe --group evalbox-scorer',
    how: "The consumer group's committed offsets against each partition's high watermark, from Kafka's admin API. Time lag comes from the scorers' own metric evalbox_consumer_lag_seconds when their /metrics are configured (EVALBOX_CONSOLE_SCORER_METRICS).",
  },
  judge: {
    title: 'Judge endpoints',
    cli: 'curl -s http://SCORER:ADMIN_PORT/metrics | grep evalbox_judge_',
    how: 'Read from the scorers\' /metrics: evalbox_judge_circuit_state (0 closed, 1 half-open, 2 open), evalbox_judge_concurrency_limit, evalbox_judge_throttled, and evalbox_judge_request_duration_seconds_count{outcome="rate_limited"} for 429s.',
  },
};

/** A figure that links to where it comes from. */
export const figure = (value: string | number, source: string, extra = ''): Html =>
  html`<a class="figure ${extra}" href="/source/${source}" title="${SOURCES[source]?.cli ?? ''}">${value}</a>`;

export function formatTime(value: Date | string | null | undefined): string {
  if (!value) return '—';
  const date = value instanceof Date ? value : new Date(value);
  if (Number.isNaN(date.getTime())) return '—';
  return `${date.toISOString().slice(0, 19).replace('T', ' ')} UTC`;
}

export const timeTag = (value: Date | string | null | undefined): Html =>
  value ? html`<time datetime="${new Date(value).toISOString()}">${formatTime(value)}</time>` : html`—`;

export function formatAge(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return '—';
  const s = Math.max(0, seconds);
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 90) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  if (s < 172_800) return `${(s / 3600).toFixed(1)} h`;
  return `${Math.round(s / 86400)} d`;
}

export const formatScore = (value: number | null | undefined): string => (value === null || value === undefined ? '—' : value.toFixed(2));

export function formatUsd(value: number | string | null | undefined): string {
  if (value === null || value === undefined) return '—';
  const n = Number(value);
  return n === 0 ? '$0' : n < 0.01 ? `$${n.toFixed(6)}` : `$${n.toFixed(4)}`;
}

export const formatCount = (value: number | string | null | undefined): string =>
  value === null || value === undefined ? '—' : Number(value).toLocaleString('en-US');

/** good / fair / poor for a normalised value, taking the dimension's direction into account. */
export function scoreTone(value: number | null, direction: string | null, status: string): string {
  if (status === 'ERROR') return 'error';
  if (status === 'SKIPPED') return 'skipped';
  if (status === 'PENDING' || value === null) return 'pending';
  const goodness = direction === 'lower_is_better' ? 1 - value : value;
  return goodness >= 0.7 ? 'good' : goodness >= 0.4 ? 'fair' : 'poor';
}

export const statusBadge = (status: string): Html =>
  html`<span class="badge badge-${status.toLowerCase().replace(/_/g, '-')}">${status.replace(/_/g, ' ').toLowerCase()}</span>`;

/** A URL query string from the defined, non-empty entries. */
export function query(params: Record<string, string | number | undefined | null>): string {
  const search = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') search.set(k, String(v));
  const text = search.toString();
  return text ? `?${text}` : '';
}

export interface PageOptions {
  title: string;
  viewer: Viewer | undefined;
  active?: 'pipeline' | 'evaluations' | 'quality' | 'dead-letters';
  /** Loads uPlot for the page's charts. */
  charts?: boolean;
}

const NAV: { id: NonNullable<PageOptions['active']>; href: string; label: string; operator: boolean }[] = [
  { id: 'pipeline', href: '/pipeline', label: 'Pipeline', operator: true },
  { id: 'evaluations', href: '/evaluations', label: 'Evaluations', operator: false },
  { id: 'quality', href: '/quality', label: 'Quality', operator: false },
  { id: 'dead-letters', href: '/dead-letters', label: 'Dead letters', operator: true },
];

export function page(options: PageOptions, body: Html): Html {
  const { viewer } = options;
  const nav = viewer ? NAV.filter((n) => !n.operator || viewer.kind === 'operator') : [];
  return html`<!doctype html>
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <title>${options.title} · evalbox console</title>
        <link rel="stylesheet" href="/assets/console.css" />
        ${
          options.charts
            ? html`<link rel="stylesheet" href="/assets/uPlot.min.css" />
                <script src="/assets/uPlot.iife.min.js" defer></script>`
            : ''
        }
        <script src="/assets/console.js" defer></script>
      </head>
      <body>
        <header class="top">
          <a class="brand" href="/">evalbox<span>console</span></a>
          <nav aria-label="Pages">
            ${nav.map((n) => html`<a href="${n.href}" ${n.id === options.active ? raw(' aria-current="page"') : ''}>${n.label}</a>`)}
          </nav>
          <div class="who">
            ${
              viewer === undefined
                ? ''
                : html`<span class="viewer">${viewer.kind === 'operator' ? 'operator' : html`application <b>${viewer.applicationId}</b>`}</span>
                    <form method="post" action="/logout"><button class="link" type="submit">Sign out</button></form>`
            }
          </div>
        </header>
        <main>${body}</main>
      </body>
    </html>`;
}

/** A section that shows its own error instead of breaking the page. */
export function section(title: string, content: Html, options: { id?: string; source?: string; note?: Html | string } = {}): Html {
  return html`<section class="card" ${options.id ? raw(` id="${options.id}"`) : ''}>
    <h2>${title}${options.source ? html` <a class="source" href="/source/${options.source}" title="${SOURCES[options.source]?.cli ?? ''}">source</a>` : ''}</h2>
    ${options.note ? html`<p class="note">${options.note}</p>` : ''} ${content}
  </section>`;
}

export const emptyState = (title: string, detail: Html | string = ''): Html =>
  html`<div class="empty">
    <p class="empty-title">${title}</p>
    ${detail ? html`<p>${detail}</p>` : ''}
  </div>`;

export const errorState = (title: string, error: unknown): Html =>
  html`<div class="error-state" role="alert">
    <p class="empty-title">${title}</p>
    <p><code>${error instanceof Error ? error.message : String(error)}</code></p>
  </div>`;

/** Chart data for the client script (an attribute, so the page needs no inline script). */
export interface ChartSpec {
  kind: 'lines' | 'bars';
  /** Epoch seconds for time axes; otherwise bin indexes with `labels`. */
  x: number[];
  labels?: string[];
  series: { label: string; values: (number | null)[] }[];
  y?: 'percent' | 'usd' | 'count';
  height?: number;
  /** The x-axis extent (the whole time window), so a lone point does not stretch the axis. */
  range?: [number, number];
}

export const chart = (spec: ChartSpec, caption: string): Html =>
  html`<figure class="chart-box">
    <div class="chart" data-chart="${JSON.stringify(spec)}" role="img" aria-label="${caption}"><p class="loading">Drawing chart…</p></div>
    <figcaption>${caption}</figcaption>
  </figure>`;

/** A column heading: its title, and `n` for a right-aligned number column. */
export type Column = string | [title: string, align: 'n'];

/** A data table: one heading per column, one body row per item. */
export const dataTable = (name: string, columns: Column[], rows: Html[], options: { className?: string } = {}): Html =>
  html`<div class="table-wrap">
    <table ${options.className ? html`class="${options.className}" ` : ''}data-table="${name}">
      <thead>
        <tr>
          ${columns.map((c) => (typeof c === 'string' ? html`<th>${c}</th>` : html`<th class="n">${c[0]}</th>`))}
        </tr>
      </thead>
      <tbody>
        ${rows}
      </tbody>
    </table>
  </div>`;
