// The text `evalbox dev` shows: the live frame (processes, pipeline counters, recent events) and
// the final summary. Pure functions from figures to text; tables are drawn by cli-table3 and
// the live frame is redrawn in place by log-update (see command.ts).
import Table from 'cli-table3';
import type { ChildState } from './supervisor.js';
import type { DimensionMean, LatencyRow, StatusCounts } from './progress.js';

export interface PipelineFigures {
  target: number;
  sent: number;
  accepted: number;
  rejected: { expected: number; unexpected: number; sent: number };
  statuses: StatusCounts;
  published: number;
  dlt: number;
  consumerLag: number;
  outboxBacklog: number;
  leader: string | undefined;
  elapsedMs: number;
}

const plain = { head: [] as string[], style: { head: [], border: [], compact: true } };

function bar(done: number, total: number, width = 24): string {
  const filled = total === 0 ? 0 : Math.round((Math.min(done, total) / total) * width);
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}]`;
}

export function processTable(children: ChildState[], leader: string | undefined): string {
  const table = new Table({ ...plain, head: ['process', 'pid', 'state', 'restarts', 'admin', 'role'] });
  for (const c of children) {
    const role = c.spec.name.startsWith('relay') ? (c.spec.name === leader ? 'leader' : 'standby') : '';
    table.push([c.spec.name, c.pid ?? '-', c.state, c.restarts, c.spec.adminPort ? `:${c.spec.adminPort}` : '-', role]);
  }
  return table.toString();
}

export function pipelineTable(f: PipelineFigures): string {
  const terminal = f.statuses.SCORED + f.statuses.PARTIALLY_SCORED + f.statuses.SCORING_FAILED;
  const table = new Table({ ...plain, head: ['stage', 'count', ''] });
  table.push(
    ['sent', f.sent, bar(f.sent, f.target)],
    ['accepted (202)', f.accepted, ''],
    ['malformed -> 4xx', `${f.rejected.expected}/${f.rejected.sent}`, f.rejected.unexpected ? `${f.rejected.unexpected} UNEXPECTED` : ''],
    ['published to Kafka', f.published, 'evaluation.created + evaluation.scored'],
    ['scored (terminal)', terminal, bar(terminal, f.accepted)],
    ['  SCORED / PARTIAL / FAILED', `${f.statuses.SCORED} / ${f.statuses.PARTIALLY_SCORED} / ${f.statuses.SCORING_FAILED}`, ''],
    ['  pending', f.statuses.PENDING, ''],
    ['on the DLT', f.dlt, ''],
    ['consumer lag (messages)', f.consumerLag, ''],
    ['outbox backlog (events)', f.outboxBacklog, ''],
  );
  return table.toString();
}

export function liveFrame(children: ChildState[], figures: PipelineFigures, recent: string[]): string {
  const seconds = (figures.elapsedMs / 1000).toFixed(0);
  return [
    `evalbox dev   ${seconds}s   (Ctrl-C stops everything)`,
    processTable(children, figures.leader),
    pipelineTable(figures),
    ...(recent.length ? ['recent:', ...recent.map((line) => `  ${line}`)] : []),
  ].join('\n');
}

/** One line per tick for logs and --once (no terminal redraw). */
export function progressLine(f: PipelineFigures): string {
  const terminal = f.statuses.SCORED + f.statuses.PARTIALLY_SCORED + f.statuses.SCORING_FAILED;
  return (
    `[${(f.elapsedMs / 1000).toFixed(1)}s] sent ${f.sent}/${f.target} accepted ${f.accepted} published ${f.published} ` +
    `scored ${terminal}/${f.accepted} pending ${f.statuses.PENDING} dlt ${f.dlt} lag ${f.consumerLag} backlog ${f.outboxBacklog}`
  );
}

const score = (value: number | null): string => (value === null ? '-' : value.toFixed(2));

/** Mean normalised score per dimension (columns) and group (rows). */
export function meansTable(rows: DimensionMean[], groupTitle: string): string {
  const dimensions = [...new Set(rows.map((r) => r.dimension))].sort();
  const groups = [...new Set(rows.map((r) => r.application))];
  const table = new Table({ ...plain, head: [groupTitle, ...dimensions] });
  for (const group of groups) {
    table.push([
      group,
      ...dimensions.map((d) => {
        const row = rows.find((r) => r.application === group && r.dimension === d);
        if (!row) return '';
        const notes = [row.skipped ? `${row.skipped} skipped` : '', row.errors ? `${row.errors} err` : ''].filter(Boolean).join(', ');
        return notes ? `${score(row.mean)} (${notes})` : score(row.mean);
      }),
    ]);
  }
  return table.toString();
}

export function latencyTable(rows: LatencyRow[]): string {
  const table = new Table({ ...plain, head: ['application', 'scored', 'p50 accept->scored', 'p99', 'max'] });
  const ms = (v: number) => `${Math.round(v)} ms`;
  for (const r of rows) table.push([r.application, r.scored, ms(r.p50Ms), ms(r.p99Ms), ms(r.maxMs)]);
  return table.toString();
}
