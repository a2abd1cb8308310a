// The console's pages, rendered on the server from data the routes gathered. Each section has a
// designed empty state and error state; long untrusted text is shown in <pre> blocks as text.
import type { DeadLetter } from '../dlt.js';
import type { EvaluationStatus } from '../db/types.js';
import type { Viewer } from './auth.js';
import type { EvaluationDetail, EvaluationListItem, HorizonBlockerRow, ParkedRow, QualityData, RelayShardRow, StageCountRow } from './data.js';
import {
  dataTable,
  chart,
  emptyState,
  errorState,
  figure,
  formatAge,
  formatCount,
  formatScore,
  formatTime,
  formatUsd,
  html,
  page,
  query,
  raw,
  scoreTone,
  section,
  SOURCES,
  statusBadge,
  timeTag,
  type Html,
} from './html.js';
import type { PartitionLag } from './kafka-state.js';
import type { ScrapeResult } from './scrape.js';
import type { BacklogRow } from '../inspect.js';

/** A value or the reason it could not be read. */
export type Outcome<T> = { ok: true; value: T } | { ok: false; error: unknown };

export const SINCE_CHOICES: { id: string; label: string; minutes: number | undefined }[] = [
  { id: '15m', label: 'last 15 minutes', minutes: 15 },
  { id: '1h', label: 'last hour', minutes: 60 },
  { id: '24h', label: 'last 24 hours', minutes: 1440 },
  { id: '7d', label: 'last 7 days', minutes: 10_080 },
  { id: '30d', label: 'last 30 days', minutes: 43_200 },
  { id: 'all', label: 'all time', minutes: undefined },
];

// ---------------------------------------------------------------- sign in, errors

export function loginPage(options: { next: string; error?: string; tokenRequired: boolean }): Html {
  return page(
    { title: 'Sign in', viewer: undefined },
    html`<section class="card narrow">
      <h1>Sign in</h1>
      <p>
        Operators sign in with the console token (<code>EVALBOX_CONSOLE_TOKEN</code>). Application owners sign in with their application's API key and see only
        that application's evaluations.
      </p>
      ${options.error ? html`<p class="flash flash-error" role="alert">${options.error}</p>` : ''}
      <form method="post" action="/login" class="stack">
        <input type="hidden" name="next" value="${options.next}" />
        <label for="token">Console token or API key</label>
        <input id="token" name="token" type="password" autocomplete="current-password" required autofocus />
        <button type="submit" class="primary">Sign in</button>
      </form>
      ${options.tokenRequired ? '' : html`<p class="note">This console listens on loopback without a token: it is open to operators on this machine.</p>`}
    </section>`,
  );
}

export function messagePage(viewer: Viewer | undefined, title: string, message: Html | string, tone: 'error' | 'info' = 'error'): Html {
  return page(
    { title, viewer },
    html`<section class="card narrow">
      <h1>${title}</h1>
      <div class="${tone === 'error' ? 'error-state' : 'empty'}" role="${tone === 'error' ? 'alert' : 'status'}"><p>${message}</p></div>
      <p><a href="/">Back to the console</a></p>
    </section>`,
  );
}

export function sourcePage(viewer: Viewer, name: string, sqlText: string | undefined): Html {
  const source = SOURCES[name];
  if (!source) return messagePage(viewer, 'Unknown source', `No figure is called "${name}".`);
  return page(
    { title: source.title, viewer },
    html`<section class="card">
      <h1>${source.title}</h1>
      <p>${source.how}</p>
      <h2>From the command line</h2>
      <pre class="code">${source.cli}</pre>
      ${
        source.sql
          ? html`<h2>SQL: <code>db/inspect/${source.sql}.sql</code></h2>
              <pre class="code">${sqlText ?? ''}</pre>`
          : ''
      }
      <p><a href="/pipeline">Back to the pipeline</a></p>
    </section>`,
  );
}

// ---------------------------------------------------------------- pipeline

export interface PipelineData {
  minutes: number;
  stages: Outcome<StageCountRow[]>;
  dlt: Outcome<{ inWindow: number; total: number }>;
  backlog: Outcome<BacklogRow[]>;
  shards: Outcome<RelayShardRow[]>;
  lag: Outcome<PartitionLag[]>;
  judge: ScrapeResult | undefined;
  blocker: Outcome<HorizonBlockerRow | undefined>;
  groupId: string;
  eventsTopic: string;
  /** Blocker age above which the banner shows. */
  horizonWarnSeconds: number;
  generatedAt: Date;
}

const STAGES: { id: StageCountRow['stage']; label: string; source: string }[] = [
  { id: 'accepted', label: 'Accepted', source: 'stages' },
  { id: 'published', label: 'Published to Kafka', source: 'stages' },
  { id: 'scored', label: 'Scored', source: 'stages' },
  { id: 'result_published', label: 'Results published', source: 'stages' },
  { id: 'parked', label: 'Parked', source: 'parked' },
];

export function pipelinePage(viewer: Viewer, live: Html, refreshSeconds: number, minutes: number): Html {
  return page(
    { title: 'Pipeline', viewer, active: 'pipeline', charts: true },
    html`<div class="page-head">
        <h1>Pipeline</h1>
        <p class="refresh" aria-live="polite"><span data-refresh-status>Refreshes every ${refreshSeconds} s.</span></p>
      </div>
      <div id="pipeline-live" data-refresh-url="/pipeline/live${query({ minutes })}" data-refresh-seconds="${refreshSeconds}">${live}</div>`,
  );
}

export function pipelineLive(d: PipelineData): Html {
  const parts: Html[] = [];
  if (d.blocker.ok && d.blocker.value && d.blocker.value.age_seconds >= d.horizonWarnSeconds) {
    const b = d.blocker.value;
    parts.push(
      html`<div class="banner banner-warn" role="alert" data-horizon-blocker>
        <b>The snapshot horizon is held back</b> by backend ${figure(b.pid, 'horizon')} (${b.application_name || 'no application name'}, ${b.state}) for
        ${figure(formatAge(b.age_seconds), 'horizon')}: the relay cannot publish rows committed after it started.
        <pre class="code small">${b.query}</pre>
      </div>`,
    );
  }
  parts.push(stagesSection(d));
  parts.push(html`<div class="grid-2">${backlogSection(d)}${shardsSection(d)}</div>`);
  parts.push(html`<div class="grid-2">${lagSection(d)}${judgeSection(d)}</div>`);
  parts.push(html`<p class="note">Generated ${timeTag(d.generatedAt)}.</p>`);
  return html`${parts}`;
}

function stagesSection(d: PipelineData): Html {
  if (!d.stages.ok) return section(`Last ${d.minutes} minutes`, errorState('Could not count the stages', d.stages.error), { source: 'stages' });
  const rows = d.stages.value;
  const totals = new Map<string, number>();
  for (const r of rows) totals.set(r.stage, (totals.get(r.stage) ?? 0) + Number(r.count));
  const now = Math.floor(d.generatedAt.getTime() / 60_000) * 60;
  const x = Array.from({ length: d.minutes }, (_, i) => now - (d.minutes - 1 - i) * 60);
  const series = STAGES.filter((s) => s.id !== 'parked').map((s) => ({
    label: s.label,
    values: x.map((t) => {
      const row = rows.find((r) => r.stage === s.id && Math.floor(new Date(r.minute).getTime() / 1000) === t);
      return row ? Number(row.count) : 0;
    }),
  }));
  const dltCard = d.dlt.ok
    ? html`<div class="stat ${d.dlt.value.inWindow > 0 ? 'stat-bad' : ''}">
        <span class="stat-label">Dead-lettered</span><span class="stat-value" data-stage="dlt">${figure(formatCount(d.dlt.value.inWindow), 'dlt')}</span
        ><span class="stat-sub">${formatCount(d.dlt.value.total)} on the topic</span>
      </div>`
    : html`<div class="stat">
        <span class="stat-label">Dead-lettered</span><span class="stat-value">?</span
        ><span class="stat-sub error-text">Kafka: ${String((d.dlt.error as Error)?.message ?? d.dlt.error)}</span>
      </div>`;
  return section(
    `Last ${d.minutes} minutes`,
    html`<div class="stats">
        ${STAGES.map(
          (s) =>
            html`<div class="stat ${s.id === 'parked' && (totals.get(s.id) ?? 0) > 0 ? 'stat-bad' : ''}">
              <span class="stat-label">${s.label}</span
              ><span class="stat-value" data-stage="${s.id}">${figure(formatCount(totals.get(s.id) ?? 0), s.source)}</span>
            </div>`,
        )}
        ${dltCard}
      </div>
      ${rows.length === 0 ? emptyState('Nothing moved in this window.', 'Send an evaluation to the API and it appears here within seconds.') : chart({ kind: 'lines', x, series, y: 'count', height: 180, range: [x[0] ?? now, now] }, 'Per minute: accepted, published, scored, results published')}`,
    { source: 'stages' },
  );
}

function backlogSection(d: PipelineData): Html {
  const title = 'Outbox backlog';
  if (!d.backlog.ok) return section(title, errorState('Could not read the outbox', d.backlog.error), { source: 'backlog' });
  const rows = d.backlog.value;
  return section(
    title,
    rows.length === 0
      ? emptyState('Nothing waiting: every committed event is on Kafka.')
      : dataTable(
          'backlog',
          ['Topic', ['Pending', 'n'], ['Oldest pending', 'n']],
          rows.map(
            (r) =>
              html`<tr data-topic="${r.topic}">
                <td class="mono">${r.topic}</td>
                <td class="n" data-pending>${figure(formatCount(r.pending), 'backlog')}</td>
                <td class="n">${figure(formatAge(r.oldest_age_seconds), 'oldest', r.oldest_age_seconds > 30 ? 'warn' : '')}</td>
              </tr>`,
          ),
        ),
    { source: 'backlog' },
  );
}

function shardsSection(d: PipelineData): Html {
  const title = 'Relay shards';
  if (!d.shards.ok) return section(title, errorState('Could not read the leases', d.shards.error), { source: 'shards' });
  const rows = d.shards.value;
  return section(
    title,
    rows.length === 0
      ? emptyState('No shards configured.')
      : dataTable(
          'shards',
          ['Shard', 'Leader', ['Epoch', 'n'], 'Cursor (xid, seq)', 'Last publish'],
          rows.map(
            (r) =>
              html`<tr>
                <td>${figure(r.shard, 'shards')}</td>
                <td>${r.leader ? html`<span class="mono">${r.leader}</span>` : html`<span class="badge badge-scoring-failed">no leader</span>`}</td>
                <td class="n">${figure(r.epoch ?? '—', 'shards')}</td>
                <td class="mono">${r.cursor_xid === null ? '—' : `${r.cursor_xid}, ${r.cursor_seq}`}</td>
                <td>${r.published_at ? html`${figure(`${formatAge(r.since_publish_seconds)} ago`, 'shards')}` : 'never'}</td>
              </tr>`,
          ),
        ),
    { source: 'shards' },
  );
}

function lagSection(d: PipelineData): Html {
  const title = 'Consumer lag';
  const note = html`Group <code>${d.groupId}</code> on <code>${d.eventsTopic}</code>.`;
  if (!d.lag.ok) return section(title, errorState('Could not ask Kafka for the offsets', d.lag.error), { source: 'lag', note });
  const rows = d.lag.value;
  const timeLag = d.judge?.timeLag;
  return section(
    title,
    rows.length === 0
      ? emptyState('The topic has no partitions yet.', 'It is created when the first scorer or the relay starts.')
      : dataTable(
          'lag',
          ['Partition', ['Committed', 'n'], ['End', 'n'], ['Lag', 'n'], ['Time lag', 'n']],
          rows.map((r) => {
            const seconds = timeLag?.get(`${r.topic}/${r.partition}`);
            return html`<tr>
              <td>${r.partition}</td>
              <td class="n">${r.committed === null ? 'none' : formatCount(r.committed)}</td>
              <td class="n">${formatCount(r.high)}</td>
              <td class="n">${figure(formatCount(r.lag), 'lag', r.lag > 0 ? 'warn' : '')}</td>
              <td class="n">
                ${seconds === undefined ? html`<span class="muted" title="configure EVALBOX_CONSOLE_SCORER_METRICS">n/a</span>` : figure(formatAge(seconds), 'lag')}
              </td>
            </tr>`;
          }),
        ),
    { source: 'lag', note },
  );
}

function judgeSection(d: PipelineData): Html {
  const title = 'Judge endpoints';
  if (!d.judge)
    return section(
      title,
      emptyState(
        'Not configured.',
        html`The console reads judge state from the scorers' admin <code>/metrics</code>: set <code>EVALBOX_CONSOLE_SCORER_METRICS</code> to their URLs
          (comma-separated).`,
      ),
      { source: 'judge' },
    );
  const { endpoints, failures } = d.judge;
  return section(
    title,
    html`${failures.map((f) => html`<p class="flash flash-error" role="alert">Could not read <code>${f.source}</code>: ${f.error}</p>`)}
    ${
      endpoints.length === 0
        ? emptyState('No judge endpoints reported.', 'The scorers run offline heuristics only, or have not made a judge call yet.')
        : dataTable(
            'judge',
            ['Endpoint', 'Circuit', ['Concurrency', 'n'], 'Throttled', ['429s', 'n'], ['Requests', 'n']],
            endpoints.map(
              (e) =>
                html`<tr>
                  <td class="mono" title="${e.source}">${e.endpoint}</td>
                  <td><span class="badge badge-circuit-${e.circuit}">${e.circuit}</span></td>
                  <td class="n">${figure(e.concurrencyLimit ?? '—', 'judge')}</td>
                  <td>${e.throttled ? html`<span class="badge badge-scoring-failed">throttled</span>` : 'no'}</td>
                  <td class="n">${figure(formatCount(e.rateLimited), 'judge')}</td>
                  <td class="n">${formatCount(e.requests)}</td>
                </tr>`,
            ),
          )
    }`,
    { source: 'judge' },
  );
}

// ---------------------------------------------------------------- evaluations

export interface ListFilters {
  application?: string;
  status?: string;
  dimension?: string;
  model?: string;
  since: string;
}

export function evaluationsPage(options: {
  viewer: Viewer;
  filters: ListFilters;
  choices: { applications: string[]; models: string[]; dimensions: string[] };
  result: Outcome<{ items: EvaluationListItem[]; next: string | undefined }>;
  anyFilter: boolean;
}): Html {
  const { viewer, filters, choices } = options;
  const select = (name: string, label: string, values: string[], current: string | undefined, allLabel: string) =>
    html`<label
      >${label}<select name="${name}">
        <option value="">${allLabel}</option>
        ${values.map((v) => html`<option value="${v}" ${v === current ? raw(' selected') : ''}>${v}</option>`)}
      </select></label
    >`;
  const form = html`<form class="filters" method="get" action="/evaluations">
    ${viewer.kind === 'operator' ? select('application', 'Application', choices.applications.includes(filters.application ?? '') || !filters.application ? choices.applications : [...choices.applications, filters.application], filters.application, 'all') : ''}
    ${select('status', 'Status', ['PENDING', 'SCORED', 'PARTIALLY_SCORED', 'SCORING_FAILED'], filters.status, 'any')}
    ${select('dimension', 'Dimension', choices.dimensions, filters.dimension, 'any')} ${select('model', 'Model', choices.models, filters.model, 'any')}
    <label
      >Created<select name="since">
        ${SINCE_CHOICES.map((s) => html`<option value="${s.id}" ${s.id === filters.since ? raw(' selected') : ''}>${s.label}</option>`)}
      </select></label
    >
    <div class="filter-actions"><button type="submit" class="primary">Filter</button>${options.anyFilter ? html`<a href="/evaluations">Clear</a>` : ''}</div>
  </form>`;
  let body: Html;
  if (!options.result.ok) body = errorState('Could not read the evaluations', options.result.error);
  else if (options.result.value.items.length === 0)
    body = options.anyFilter
      ? emptyState('No evaluations match these filters.', html`<a href="/evaluations">Clear the filters</a> or widen the time window.`)
      : emptyState(
          'No evaluations yet.',
          html`POST one to the API (<code>POST /v1/evaluations</code> with an API key); it shows here as soon as it is committed.`,
        );
  else {
    const { items, next } = options.result.value;
    body = html`<div class="table-wrap">
        <table class="evaluations cards" data-table="evaluations">
          <thead>
            <tr>
              <th>Created</th>
              <th>Evaluation</th>
              ${viewer.kind === 'operator' ? html`<th>Application</th>` : ''}
              <th>Model</th>
              <th>Status</th>
              <th>Scores</th>
            </tr>
          </thead>
          <tbody>
            ${items.map(
              (e) =>
                html`<tr data-evaluation="${e.id}">
                  <td class="nowrap">${timeTag(e.created_at)}</td>
                  <td class="nowrap"><a class="mono" href="/evaluations/${e.id}">${e.id.slice(0, 8)}…${e.id.slice(-4)}</a></td>
                  ${viewer.kind === 'operator' ? html`<td>${e.application_id}</td>` : ''}
                  <td>${e.model_id ?? html`<span class="muted">—</span>`}</td>
                  <td>${statusBadge(e.status)}</td>
                  <td class="chips">${scoreChips(e)}</td>
                </tr>`,
            )}
          </tbody>
        </table>
      </div>
      ${next ? html`<p class="pager"><a class="button" href="/evaluations${query({ ...filters, before: next })}">Older evaluations →</a></p>` : ''}`;
  }
  return page(
    { title: 'Evaluations', viewer, active: 'evaluations' },
    html`<div class="page-head"><h1>Evaluations</h1></div>
      ${form}
      <section class="card flush">${body}</section>`,
  );
}

function scoreChips(e: EvaluationListItem): Html {
  const byDimension = new Map(e.scores.map((s) => [s.dimension, s]));
  return html`${e.dimensions.map((dimension) => {
    const s = byDimension.get(dimension);
    const tone = s ? scoreTone(s.value, s.direction, s.status) : 'pending';
    const shown = !s ? '…' : s.status === 'COMPLETED' ? formatScore(s.value) : s.status.toLowerCase();
    return html`<span class="chip chip-${tone}" title="${dimension}: ${s ? `${s.status} ${s.label ?? ''}` : 'pending'}"
      ><span class="chip-name">${dimension}</span> <b>${shown}</b></span
    >`;
  })}`;
}

export function evaluationDetailPage(viewer: Viewer, detail: EvaluationDetail): Html {
  const { evaluation: e, scores, events } = detail;
  const created = events.find((ev) => ev.type === 'evaluation.created');
  const result = events.find((ev) => ev.type === 'evaluation.scored');
  const traceparent = created?.headers?.traceparent;
  const traceId = traceparent?.split('-')[1];
  const context = e.context === null ? null : Array.isArray(e.context) ? e.context : [e.context];
  const scoredTimes = scores.map((s) => s.updated_at.getTime());
  const eventState = (ev: (typeof events)[number] | undefined) =>
    !ev
      ? html`<span class="muted">not written</span>`
      : ev.state === 'published'
        ? html`published to <code>${ev.topic}</code> (shard ${ev.shard}; the relay's cursor passed
            it${ev.shard_published_at ? html`, cursor moved ${timeTag(ev.shard_published_at)}` : ''})`
        : ev.state === 'parked'
          ? html`<span class="error-text">parked: ${ev.parked_reason ?? ''}</span>`
          : html`pending in the outbox`;
  const steps: { label: string; done: boolean; time: Html; detail: Html }[] = [
    { label: 'Accepted', done: true, time: timeTag(e.created_at), detail: html`202 answered to application <b>${e.application_id}</b>` },
    {
      label: 'Committed',
      done: Boolean(created),
      time: created ? timeTag(created.created_at) : html`—`,
      detail: created
        ? html`evaluation row and outbox event <code>${created.id}</code> in one transaction (xid ${created.xid})`
        : html`no outbox event found (older than the outbox retention?)`,
    },
    {
      label: 'On Kafka',
      done: created?.state === 'published',
      time: html`—`,
      detail: html`${eventState(created)}${created?.state === 'published' ? html`<span data-load="/evaluations/${e.id}/kafka"><span class="muted"> · finding its offset…</span></span>` : ''}`,
    },
    {
      label: 'Scored',
      done: e.scored_at !== null,
      time: timeTag(e.scored_at),
      detail: e.scored_at
        ? html`${statusBadge(e.status)} ${scores.length} dimension(s), last written ${timeTag(new Date(Math.max(...scoredTimes)))}`
        : html`${statusBadge(e.status)} waiting for the scorer`,
    },
    {
      label: 'Result event',
      done: result?.state === 'published',
      time: result ? timeTag(result.created_at) : html`—`,
      detail: result ? html`evaluation.scored <code>${result.id}</code>: ${eventState(result)}` : html`<span class="muted">not written yet</span>`,
    },
  ];
  const scoreCards = e.dimensions.map((dimension) => {
    const s = scores.find((row) => row.dimension === dimension);
    if (!s)
      return html`<article class="score score-pending" data-dimension="${dimension}">
        <h3>${dimension}</h3>
        <p class="muted">Not scored yet.</p>
      </article>`;
    const tone = scoreTone(s.value, s.direction, s.status);
    return html`<article class="score score-${tone}" data-dimension="${dimension}">
      <header>
        <h3>${dimension}</h3>
        <span class="score-value" data-score>${s.status === 'COMPLETED' ? formatScore(s.value) : s.status.toLowerCase()}</span>
      </header>
      ${s.value !== null ? html`<meter class="meter-${tone}" min="0" max="1" low="0.4" high="0.7" optimum="${s.direction === 'lower_is_better' ? 0 : 1}" value="${s.value}">${formatScore(s.value)}</meter>` : ''}
      <p class="score-label">
        ${s.label ? html`<b>${s.label}</b>` : ''} ${s.direction ? html`<span class="muted">(${s.direction.replace(/_/g, ' ')})</span>` : ''}
      </p>
      <p class="reasoning" data-reasoning>${s.reasoning ?? html`<span class="muted">no reasoning recorded</span>`}</p>
      <dl class="facts">
        <dt>Status</dt>
        <dd>${s.status}${s.error_code ? html` · <code>${s.error_code}</code>` : ''}</dd>
        <dt>Scorer</dt>
        <dd>${s.scorer_name} <span class="muted">v${s.scorer_version}</span> · ${s.source === 'LLM_JUDGE' ? 'LLM judge' : 'heuristic'}</dd>
        ${
          s.judge_model
            ? html`<dt>Judge model</dt>
                <dd>${s.judge_model}</dd>`
            : ''
        }
        ${
          s.input_tokens !== null || s.output_tokens !== null
            ? html`<dt>Tokens</dt>
                <dd>${formatCount(s.input_tokens ?? 0)} in · ${formatCount(s.output_tokens ?? 0)} out</dd>`
            : ''
        }
        ${
          s.source === 'LLM_JUDGE'
            ? html`<dt>Cost</dt>
                <dd>${formatUsd(s.cost_usd)}</dd>
                <dt>Cache hit</dt>
                <dd>${s.cache_hit ? 'yes' : 'no'}</dd>`
            : ''
        }
        ${
          s.latency_ms !== null
            ? html`<dt>Latency</dt>
                <dd>${formatCount(s.latency_ms)} ms</dd>`
            : ''
        }
        <dt>Attempts</dt>
        <dd>${s.attempts}</dd>
        <dt>Written</dt>
        <dd>${timeTag(s.updated_at)}</dd>
      </dl>
    </article>`;
  });
  return page(
    { title: `Evaluation ${e.id}`, viewer, active: 'evaluations' },
    html`<p class="crumbs"><a href="/evaluations">Evaluations</a> / <span class="mono">${e.id}</span></p>
      <div class="page-head"><h1>Evaluation ${statusBadge(e.status)}</h1></div>
      <section class="card">
        <dl class="facts wide">
          <dt>Id</dt>
          <dd class="mono">${e.id}</dd>
          <dt>Application</dt>
          <dd>${e.application_id}</dd>
          <dt>Model</dt>
          <dd>${e.model_id ?? '—'}</dd>
          <dt>External id</dt>
          <dd>${e.idempotency_key ?? '—'}</dd>
          <dt>Trace id</dt>
          <dd class="mono" data-trace-id>${traceId ?? '—'}</dd>
        </dl>
      </section>
      <section class="card">
        <h2>Timeline</h2>
        <ol class="timeline">
          ${steps.map((s) => html`<li class="${s.done ? 'done' : 'todo'}"><span class="step">${s.label}</span><span class="when">${s.time}</span><span class="what">${s.detail}</span></li>`)}
        </ol>
      </section>
      <section class="card">
        <h2>Scores</h2>
        <div class="scores">${scoreCards}</div>
      </section>
      <div class="grid-2">
        <section class="card">
          <h2>Prompt</h2>
          <pre class="text" data-field="prompt">${e.prompt}</pre>
        </section>
        <section class="card">
          <h2>Response</h2>
          <pre class="text" data-field="response">${e.response}</pre>
        </section>
      </div>
      <section class="card">
        <h2>Context</h2>
        ${
          context === null || context.length === 0
            ? emptyState('No context was sent.')
            : html`<ol class="context">
                ${context.map((c) => html`<li><pre class="text" data-field="context">${String(c)}</pre></li>`)}
              </ol>`
        }
      </section>
      ${
        e.reference !== null
          ? html`<section class="card">
              <h2>Reference</h2>
              <pre class="text">${e.reference}</pre>
            </section>`
          : ''
      }
      ${
        e.metadata && Object.keys(e.metadata).length > 0
          ? html`<section class="card">
              <h2>Metadata</h2>
              <pre class="code">${JSON.stringify(e.metadata, null, 2)}</pre>
            </section>`
          : ''
      }`,
  );
}

// ---------------------------------------------------------------- quality

export function qualityPage(options: {
  viewer: Viewer;
  applications: string[];
  application: string | undefined;
  window: string;
  data: Outcome<QualityData>;
}): Html {
  const { viewer } = options;
  const windows = [
    { id: '24h', label: 'last 24 hours (hourly)' },
    { id: '7d', label: 'last 7 days (daily)' },
    { id: '30d', label: 'last 30 days (daily)' },
  ];
  const form = html`<form class="filters" method="get" action="/quality">
    ${
      viewer.kind === 'operator'
        ? html`<label
            >Application<select name="application">
              <option value="">all</option>
              ${options.applications.map((a) => html`<option value="${a}" ${a === options.application ? raw(' selected') : ''}>${a}</option>`)}
            </select></label
          >`
        : ''
    }
    <label
      >Window<select name="window">
        ${windows.map((w) => html`<option value="${w.id}" ${w.id === options.window ? raw(' selected') : ''}>${w.label}</option>`)}
      </select></label
    >
    <div class="filter-actions"><button type="submit" class="primary">Show</button></div>
  </form>`;
  let body: Html;
  if (!options.data.ok) body = section('Quality', errorState('Could not compute the quality figures', options.data.error));
  else if (options.data.value.dimensions.length === 0)
    body = section('Quality', emptyState('No scores in this window.', 'Scores appear here once the scorer has scored evaluations created in the window.'));
  else {
    const d = options.data.value;
    const binLabels = Array.from({ length: 10 }, (_, i) => `${(i / 10).toFixed(1)}–${((i + 1) / 10).toFixed(1)}`);
    const costModels = [...new Set(d.cost.map((c) => c.model))].sort();
    const costDays = [...new Set(d.cost.map((c) => c.day.getTime() / 1000))].sort((a, b) => a - b);
    body = html`${section(
      'Per dimension',
      dataTable(
        'quality',
        ['Dimension', ['Scored', 'n'], ['Mean', 'n'], ['Failed', 'n'], ['Failure rate', 'n'], ['Skipped', 'n']],
        d.dimensions.map((dim) => {
          const t = d.totals.get(dim);
          const rate = t && t.scored > 0 ? t.failed / t.scored : 0;
          return html`<tr data-dimension="${dim}">
            <td>${dim}</td>
            <td class="n">${formatCount(t?.scored)}</td>
            <td class="n">${formatScore(t?.mean)}</td>
            <td class="n">${formatCount(t?.failed)}</td>
            <td class="n ${rate > 0.05 ? 'warn' : ''}">${(rate * 100).toFixed(1)}%</td>
            <td class="n">${formatCount(t?.skipped)}</td>
          </tr>`;
        }),
      ),
    )}
    ${section(
      'Score distribution',
      html`<div class="small-multiples">
        ${d.dimensions.map((dim) =>
          chart(
            {
              kind: 'bars',
              x: binLabels.map((_, i) => i),
              labels: binLabels,
              series: [{ label: dim, values: d.distribution.get(dim) ?? [] }],
              y: 'count',
              height: 140,
            },
            dim,
          ),
        )}
      </div>`,
      { note: 'Completed scores by normalised value (0 to 1), per dimension.' },
    )}
    ${section(
      'Failure rate over time',
      chart(
        {
          kind: 'lines',
          x: d.times,
          series: d.dimensions.map((dim) => ({ label: dim, values: d.failureRate.get(dim) ?? [] })),
          y: 'percent',
          height: 220,
          range: d.range,
        },
        'Share of scores that ended in ERROR, per dimension',
      ),
    )}
    ${section(
      'Judge cost per model per day',
      d.cost.length === 0
        ? emptyState('No judge calls in this window.', 'Only LLM-judge dimensions cost money; heuristics are free.')
        : html`${chart(
            {
              kind: 'bars',
              x: costDays,
              series: costModels.map((m) => ({
                label: m,
                values: costDays.map((t) => d.cost.find((c) => c.model === m && c.day.getTime() / 1000 === t)?.costUsd ?? 0),
              })),
              y: 'usd',
              height: 200,
              range: [Math.floor(d.range[0] / 86400) * 86400 - 43200, Math.floor(d.range[1] / 86400) * 86400 + 43200],
            },
            'USD per day, per judge model',
          )}
          ${dataTable(
            'cost',
            ['Day', 'Model', ['Cost', 'n'], ['Scores', 'n'], ['Cache hits', 'n'], ['Input tokens', 'n'], ['Output tokens', 'n']],
            d.cost.map(
              (c) =>
                html`<tr>
                  <td>${c.day.toISOString().slice(0, 10)}</td>
                  <td>${c.model}</td>
                  <td class="n">${formatUsd(c.costUsd)}</td>
                  <td class="n">${formatCount(c.calls)}</td>
                  <td class="n">${formatCount(c.cacheHits)}</td>
                  <td class="n">${formatCount(c.inputTokens)}</td>
                  <td class="n">${formatCount(c.outputTokens)}</td>
                </tr>`,
            ),
          )}`,
    )}`;
  }
  return page(
    { title: 'Quality', viewer, active: 'quality', charts: true },
    html`<div class="page-head"><h1>Quality</h1></div>
      ${form}${body}`,
  );
}

// ---------------------------------------------------------------- dead letters and parked rows

export function deadLettersPage(viewer: Viewer, options: { parked: Outcome<ParkedRow[]>; flash?: { tone: 'ok' | 'error'; text: string } }): Html {
  let parked: Html;
  if (!options.parked.ok) parked = errorState('Could not read the parked rows', options.parked.error);
  else {
    const rows = options.parked.value;
    const waiting = rows.filter((r) => !r.redriven_at);
    parked =
      rows.length === 0
        ? emptyState('No parked rows.', 'The relay parks a row only when Kafka refuses it for good (too large, illegal topic).')
        : html`${waiting.length > 1 ? html`<p><a class="button danger" href="/parked/redrive?all=1">Redrive all ${waiting.length} parked rows…</a></p>` : ''}
          ${dataTable(
            'parked',
            ['Parked', 'Event', 'Topic', 'Key', 'Reason', ['Bytes', 'n'], ''],
            rows.map(
              (r) =>
                html`<tr data-parked="${r.id}">
                  <td class="nowrap">${timeTag(r.parked_at)}</td>
                  <td class="mono">${r.id.slice(0, 8)}… <span class="muted">${r.type}</span></td>
                  <td class="mono">${r.topic}</td>
                  <td>${r.key}</td>
                  <td><code>${r.error_code}</code> ${r.error_message}</td>
                  <td class="n">${formatCount(r.payload_bytes)}</td>
                  <td>
                    ${r.redriven_at ? html`<span class="muted">redriven ${timeTag(r.redriven_at)}</span>` : html`<a class="button" href="/parked/redrive?id=${r.id}">Redrive…</a>`}
                  </td>
                </tr>`,
            ),
            { className: 'cards' },
          )}`;
  }
  return page(
    { title: 'Dead letters', viewer, active: 'dead-letters' },
    html`<div class="page-head"><h1>Dead letters and parked rows</h1></div>
      ${options.flash ? html`<p class="flash flash-${options.flash.tone}" role="status" data-flash>${options.flash.text}</p>` : ''}
      ${section(
        'Dead letters',
        html`<div data-load="/dead-letters/records">
          <p class="loading">Reading the dead-letter topic from Kafka…</p>
          <noscript><a href="/dead-letters/records">Show the dead letters</a></noscript>
        </div>`,
        { source: 'dlt' },
      )}
      ${section('Parked outbox rows', parked, { source: 'parked' })}`,
  );
}

export interface DeadLetterView {
  record: DeadLetter;
  evaluationId: string | undefined;
  evaluation: { application_id: string; status: EvaluationStatus } | undefined;
}

export function deadLetterRecords(topic: string, outcome: Outcome<DeadLetterView[]>): Html {
  if (!outcome.ok) return errorState(`Could not read ${topic}`, outcome.error);
  const records = outcome.value;
  if (records.length === 0)
    return emptyState('The dead-letter topic is empty.', html`Nothing on <code>${topic}</code>: every event was scored or is still in flight.`);
  return html`<p class="toolbar">
      <span>${formatCount(records.length)} record(s) on <code>${topic}</code>, oldest first.</span>
      <a class="button danger" href="/dead-letters/redrive?all=1">Redrive all…</a>
    </p>
    ${dataTable(
      'dlt',
      ['Record', 'Reason', 'From', 'Evaluation', ''],
      records.map(({ record: r, evaluationId, evaluation }) => {
        const h = r.headers;
        return html`<tr data-ref="${r.ref}">
          <td class="nowrap"><span class="mono">${r.ref}</span><br /><span class="small muted">${timeTag(h.dlt_failed_at ?? null)}</span></td>
          <td class="reason-cell">
            <code>${h.dlt_error_code ?? '?'}</code>
            <span class="reason">${h.dlt_error_message ?? ''}</span
            >${h.dlt_redriven_from ? html` <span class="muted">(failed again after a redrive)</span>` : ''} <br /><span class="small muted"
              >${h.dlt_dimension ? `dimension ${h.dlt_dimension.split(',').join(', ')}` : 'no dimension'} · ${h.dlt_attempts ?? '?'} attempt(s)</span
            >
          </td>
          <td class="mono small wrap">
            ${h.dlt_original_topic ?? '?'}:${h.dlt_original_partition ?? '?'}:${h.dlt_original_offset ?? '?'}<br /><span class="muted"
              >group ${h.dlt_consumer_group ?? '?'}</span
            >
          </td>
          <td>
            ${evaluationId ? html`<a class="mono" href="/evaluations/${evaluationId}">${evaluationId.slice(0, 8)}…</a> ${evaluation ? statusBadge(evaluation.status) : html`<span class="muted">not in the database</span>`}` : html`<span class="muted">unreadable value</span>`}
          </td>
          <td><a class="button" href="/dead-letters/redrive?ref=${encodeURIComponent(r.ref)}">Redrive…</a></td>
        </tr>`;
      }),
      { className: 'cards' },
    )}`;
}

export function confirmPage(
  viewer: Viewer,
  options: { title: string; question: Html; action: string; fields: Record<string, string>; cancel: string; detail?: Html },
): Html {
  return page(
    { title: options.title, viewer, active: 'dead-letters' },
    html`<section class="card narrow" data-confirm>
      <h1>${options.title}</h1>
      <p>${options.question}</p>
      ${options.detail ?? ''}
      <form method="post" action="${options.action}" class="row">
        ${Object.entries(options.fields).map(([name, value]) => html`<input type="hidden" name="${name}" value="${value}" />`)}
        <button type="submit" class="primary danger">Yes, redrive</button>
        <a class="button" href="${options.cancel}">Cancel</a>
      </form>
    </section>`,
  );
}

export { formatTime };
