// The web console as a hono app. createConsoleApp(ctx) builds it from injected parts so tests can
// call app.request() without a socket; src/console/command.ts is the composition root that serves
// it. Read-mostly: the only writes are the redrives, the same operations as `evalbox dlt redrive`
// and `evalbox outbox redrive`, behind a confirmation page and a same-origin check.
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Hono, type Context } from 'hono';
import { sql } from 'kysely';
import { parse as parseCookies, serialize as serializeCookie } from 'hono/utils/cookie';
import { csrf } from 'hono/csrf';
import { HTTPException } from 'hono/http-exception';
import { redriveParked } from '../cli/outbox-queries.js';
import type { Config } from '../config.js';
import type { Db } from '../db/index.js';
import type { EvaluationStatus } from '../db/types.js';
import { readDeadLetters, redriveDeadLetters, type DeadLetter } from '../dlt.js';
import { inspectionSql } from '../inspect.js';
import { createIdempotentProducer, createKafka } from '../kafka.js';
import type { Logger } from '../logging.js';
import { resolveViewer, SESSION_COOKIE, type Viewer } from './auth.js';
import {
  evaluationStatuses,
  filterChoices,
  findEvaluationDetail,
  horizonBlocker,
  isUuid,
  listEvaluations,
  outboxBacklog,
  parkedRows,
  qualityData,
  relayShards,
  stageCounts,
  STATUSES,
} from './data.js';
import { html, query, SOURCES, timeTag, type Html } from './html.js';
import { createKafkaState, isUnknownTopic, sharedConnection, type KafkaState } from './kafka-state.js';
import {
  confirmPage,
  deadLetterRecords,
  deadLettersPage,
  evaluationDetailPage,
  evaluationsPage,
  loginPage,
  messagePage,
  pipelineLive,
  pipelinePage,
  qualityPage,
  SINCE_CHOICES,
  sourcePage,
  type DeadLetterView,
  type Outcome,
  type PipelineData,
} from './pages.js';
import { scrapeScorers } from './scrape.js';

export interface ConsoleContext {
  db: Db;
  config: Config;
  logger: Logger;
  /** EVALBOX_CONSOLE_TOKEN; undefined only when bound to loopback. */
  operatorToken: string | undefined;
  /** The scorers' consumer group, whose lag the pipeline page shows. */
  scorerGroup: string;
  /** The scorers' admin /metrics URLs (judge state, time lag); empty = not configured. */
  scorerMetricsUrls: string[];
  refreshSeconds?: number;
  /** A horizon blocker older than this is shown on the pipeline page. */
  horizonWarnSeconds?: number;
  /** Whether the session cookie is marked Secure (the console is served over HTTPS). */
  secureCookie?: boolean;
}

export interface ConsoleApp {
  app: Hono<Env>;
  close(): Promise<void>;
}

type Env = { Variables: { viewer: Viewer } };

const CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "font-src 'self'",
  "form-action 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
].join('; ');

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);

/** The files the pages load: our own script and style, and uPlot from node_modules (no CDN). */
function loadAssets(): Map<string, { body: string; type: string }> {
  const read = (file: string) => fs.readFileSync(file, 'utf8');
  return new Map([
    ['console.css', { body: read(path.join(here, 'assets/console.css')), type: 'text/css; charset=utf-8' }],
    ['console.js', { body: read(path.join(here, 'assets/console.js')), type: 'text/javascript; charset=utf-8' }],
    ['uPlot.iife.min.js', { body: read(require.resolve('uplot/dist/uPlot.iife.min.js')), type: 'text/javascript; charset=utf-8' }],
    ['uPlot.min.css', { body: read(require.resolve('uplot/dist/uPlot.min.css')), type: 'text/css; charset=utf-8' }],
  ]);
}

const settled = async <T>(work: Promise<T>): Promise<Outcome<T>> => {
  try {
    return { ok: true, value: await work };
  } catch (error) {
    return { ok: false, error };
  }
};

/** A local path to return to after signing in (never another origin). */
const safeNext = (value: unknown): string => (typeof value === 'string' && /^\/(?![/\\])/.test(value) ? value : '/');

function evaluationIdOf(record: DeadLetter): string | undefined {
  const match = /"evaluationId"\s*:\s*"([0-9a-f-]{36})"/i.exec(record.value?.toString('utf8', 0, 4096) ?? '');
  return match?.[1];
}

export function createConsoleApp(ctx: ConsoleContext): ConsoleApp {
  const { db, config, logger } = ctx;
  const refreshSeconds = ctx.refreshSeconds ?? 5;
  const assets = loadAssets();
  const policy = { operatorToken: ctx.operatorToken };
  let kafka: KafkaState | undefined;
  const kafkaState = (): KafkaState => {
    if (!config.kafkaBrokers) throw new Error('KAFKA_BROKERS is not set');
    kafka ??= createKafkaState(config.kafkaBrokers, logger);
    return kafka;
  };
  const dltProducer = sharedConnection(() => createIdempotentProducer(createKafka(config.kafkaBrokers, 'evalbox-console', logger)));

  const app = new Hono<Env>();
  const clearedCookie = serializeCookie(SESSION_COOKIE, '', { httpOnly: true, sameSite: 'Strict', path: '/', maxAge: 0 });

  app.use('*', async (c, next) => {
    await next();
    c.header('content-security-policy', CSP);
    c.header('x-content-type-options', 'nosniff');
    c.header('referrer-policy', 'no-referrer');
    c.header('x-frame-options', 'DENY');
    if (!c.res.headers.has('cache-control')) c.header('cache-control', 'no-store');
  });

  app.onError((error, c) => {
    // Refusals thrown by middleware (the CSRF check's 403) keep their status: they are the client's doing.
    if (error instanceof HTTPException) return c.html(messagePage(c.get('viewer'), 'Refused', error.message || 'The request was refused.'), error.status);
    logger.error({ err: error, path: c.req.path }, 'console request failed');
    return c.html(messagePage(c.get('viewer'), 'Something went wrong', `The console could not build this page: ${error.message}`), 500);
  });
  app.notFound((c) => c.html(messagePage(c.get('viewer'), 'Not found', 'There is no such page.'), 404));

  app.get('/assets/:file', (c) => {
    const asset = assets.get(c.req.param('file'));
    if (!asset) return c.text('not found', 404);
    return c.body(asset.body, 200, { 'content-type': asset.type, 'cache-control': 'public, max-age=300' });
  });
  app.get('/healthz', (c) => c.json({ status: 'ok' }));
  app.get('/readyz', async (c) => {
    try {
      await sql`SELECT 1`.execute(db);
      return c.json({ status: 'ready' });
    } catch (error) {
      return c.json({ status: 'not ready', reason: (error as Error).message }, 503);
    }
  });

  // Forms post only from the console's own pages.
  app.use('*', csrf());

  app.get('/login', (c) => c.html(loginPage({ next: safeNext(c.req.query('next')), tokenRequired: policy.operatorToken !== undefined })));
  app.post('/login', async (c) => {
    const form = await c.req.parseBody();
    const token = typeof form.token === 'string' ? form.token.trim() : '';
    const next = safeNext(form.next);
    const viewer = token ? await resolveViewer(db, policy, token) : undefined;
    if (!viewer)
      return c.html(
        loginPage({ next, error: 'That token or API key is not valid (or the key was revoked).', tokenRequired: policy.operatorToken !== undefined }),
        401,
      );
    c.header(
      'set-cookie',
      serializeCookie(SESSION_COOKIE, token, { httpOnly: true, sameSite: 'Strict', path: '/', secure: ctx.secureCookie ?? false, maxAge: 12 * 3600 }),
    );
    return c.redirect(next === '/' ? (viewer.kind === 'operator' ? '/pipeline' : '/evaluations') : next, 303);
  });
  app.post('/logout', (c) => {
    c.header('set-cookie', clearedCookie);
    return c.redirect('/login', 303);
  });

  // Everything below needs a viewer: the cookie, a Bearer header, or an open loopback console.
  app.use('*', async (c, next) => {
    const bearer = /^Bearer\s+(\S+)\s*$/i.exec(c.req.header('authorization') ?? '')?.[1];
    const credential = bearer ?? parseCookies(c.req.header('cookie') ?? '', SESSION_COOKIE)[SESSION_COOKIE];
    const viewer = await resolveViewer(db, policy, credential);
    if (!viewer) {
      if (credential) c.header('set-cookie', clearedCookie);
      if (c.req.method === 'GET' && !c.req.path.endsWith('/live') && !c.req.path.endsWith('/records') && !c.req.path.endsWith('/kafka')) {
        return c.redirect(`/login${query({ next: c.req.path + (new URL(c.req.url).search || '') })}`, 303);
      }
      return c.html(messagePage(undefined, 'Sign in again', html`Your session ended. <a href="/login">Sign in</a>.`), 401);
    }
    c.set('viewer', viewer);
    await next();
  });

  const operatorOnly = (c: Context<Env>): Response | Promise<Response> | undefined =>
    c.get('viewer').kind === 'operator'
      ? undefined
      : c.html(messagePage(c.get('viewer'), 'Operators only', 'This page is for the people who run evalbox: sign in with the console token to see it.'), 403);

  app.get('/', (c) => c.redirect(c.get('viewer').kind === 'operator' ? '/pipeline' : '/evaluations', 303));

  app.get('/source/:name', (c) => {
    const denied = operatorOnly(c);
    if (denied) return denied;
    const source = SOURCES[c.req.param('name')];
    return c.html(sourcePage(c.get('viewer'), c.req.param('name'), source?.sql ? inspectionSql(source.sql) : undefined), source ? 200 : 404);
  });

  // ------------------------------------------------------------ pipeline

  const pipelineMinutes = (c: Context<Env>): number => {
    const minutes = Number(c.req.query('minutes') ?? 15);
    return Number.isInteger(minutes) && minutes >= 1 && minutes <= 240 ? minutes : 15;
  };

  async function pipelineData(minutes: number): Promise<PipelineData> {
    const generatedAt = new Date();
    const windowStart = Math.floor(generatedAt.getTime() / 60_000) * 60_000 - (minutes - 1) * 60_000;
    const [stages, dlt, backlog, shards, lag, judge, blocker] = await Promise.all([
      settled(stageCounts(db, minutes)),
      settled(Promise.resolve().then(() => kafkaState().recordsSince(config.topics.dlt, windowStart))),
      settled(outboxBacklog(db)),
      settled(relayShards(db)),
      settled(Promise.resolve().then(() => kafkaState().consumerLag(ctx.scorerGroup, config.topics.events))),
      ctx.scorerMetricsUrls.length > 0 ? scrapeScorers(ctx.scorerMetricsUrls) : Promise.resolve(undefined),
      settled(horizonBlocker(db)),
    ]);
    return {
      minutes,
      stages,
      dlt,
      backlog,
      shards,
      lag,
      judge,
      blocker,
      groupId: ctx.scorerGroup,
      eventsTopic: config.topics.events,
      horizonWarnSeconds: ctx.horizonWarnSeconds ?? 5,
      generatedAt,
    };
  }

  app.get('/pipeline', async (c) => {
    const denied = operatorOnly(c);
    if (denied) return denied;
    const minutes = pipelineMinutes(c);
    return c.html(pipelinePage(c.get('viewer'), pipelineLive(await pipelineData(minutes)), refreshSeconds, minutes));
  });
  app.get('/pipeline/live', async (c) => {
    const denied = operatorOnly(c);
    if (denied) return denied;
    return c.html(pipelineLive(await pipelineData(pipelineMinutes(c))));
  });

  // ------------------------------------------------------------ evaluations

  /** The application the viewer may see: an application key is pinned to its own. */
  const scopeOf = (viewer: Viewer, requested: string | undefined): string | undefined =>
    viewer.kind === 'application' ? viewer.applicationId : requested || undefined;

  app.get('/evaluations', async (c) => {
    const viewer = c.get('viewer');
    const q = c.req.query();
    const since = SINCE_CHOICES.find((s) => s.id === q.since) ?? SINCE_CHOICES[SINCE_CHOICES.length - 1];
    const status = STATUSES.includes(q.status as EvaluationStatus) ? (q.status as EvaluationStatus) : undefined;
    const filters = {
      application: viewer.kind === 'operator' ? q.application || undefined : undefined,
      status,
      dimension: q.dimension || undefined,
      model: q.model || undefined,
      since: since?.id ?? 'all',
    };
    const applicationId = scopeOf(viewer, filters.application);
    const [choices, result] = await Promise.all([
      filterChoices(db, viewer.kind === 'application' ? viewer.applicationId : undefined).catch(() => ({ applications: [], models: [], dimensions: [] })),
      settled(
        listEvaluations(db, {
          applicationId,
          status,
          dimension: filters.dimension,
          model: filters.model,
          since: since?.minutes ? new Date(Date.now() - since.minutes * 60_000) : undefined,
          before: q.before,
          limit: 50,
        }),
      ),
    ]);
    const anyFilter = Boolean(filters.application || filters.status || filters.dimension || filters.model || filters.since !== 'all' || q.before);
    return c.html(evaluationsPage({ viewer, filters, choices, result, anyFilter }));
  });

  app.get('/evaluations/:id', async (c) => {
    const viewer = c.get('viewer');
    const detail = await findEvaluationDetail(db, c.req.param('id'), scopeOf(viewer, undefined));
    // Another application's evaluation is "not found", never "forbidden" (as the REST API answers).
    if (!detail) return c.html(messagePage(viewer, 'Evaluation not found', 'No evaluation with this id is visible to you.'), 404);
    return c.html(evaluationDetailPage(viewer, detail));
  });

  app.get('/evaluations/:id/kafka', async (c) => {
    const detail = await findEvaluationDetail(db, c.req.param('id'), scopeOf(c.get('viewer'), undefined));
    const created = detail?.events.find((e) => e.type === 'evaluation.created');
    if (!detail || !created || created.state !== 'published') return c.html(html``, detail ? 200 : 404);
    try {
      // The record's timestamp is its produce time, after the row was written.
      const position = await kafkaState().findEvent(created.topic, created.id, created.created_at.getTime() - 1_000);
      return c.html(
        position
          ? html` at <b data-kafka-position>partition ${position.partition}, offset ${position.offset}</b> (record time
              ${timeTag(new Date(position.timestamp))})`
          : html` <span class="muted">(not found among the records written after it; it may have been removed by retention)</span>`,
      );
    } catch (error) {
      return c.html(html` <span class="error-text">(could not ask Kafka: ${(error as Error).message})</span>`);
    }
  });

  // ------------------------------------------------------------ quality

  app.get('/quality', async (c) => {
    const viewer = c.get('viewer');
    const q = c.req.query();
    const window = ['24h', '7d', '30d'].includes(q.window ?? '') ? (q.window as string) : '7d';
    const hours = window === '24h' ? 24 : window === '7d' ? 168 : 720;
    const application = viewer.kind === 'operator' ? q.application || undefined : viewer.applicationId;
    const since = new Date(Date.now() - hours * 3600_000);
    const [choices, data] = await Promise.all([
      filterChoices(db, viewer.kind === 'application' ? viewer.applicationId : undefined).catch(() => ({ applications: [] as string[] })),
      settled(qualityData(db, { applicationId: application, since, bucket: window === '24h' ? 'hour' : 'day' })),
    ]);
    return c.html(qualityPage({ viewer, applications: choices.applications, application, window, data }));
  });

  // ------------------------------------------------------------ dead letters and parked rows

  async function deadLetterViews(): Promise<DeadLetterView[]> {
    const records = await readDeadLetters(config.kafkaBrokers, config.topics.dlt).catch((error: unknown) => {
      if (isUnknownTopic(error)) return [];
      throw error;
    });
    const ids = records.map(evaluationIdOf);
    const statuses = await evaluationStatuses(
      db,
      ids.filter((id): id is string => id !== undefined),
    );
    return records.map((record, i) => {
      const evaluationId = ids[i];
      return { record, evaluationId, evaluation: evaluationId ? statuses.get(evaluationId) : undefined };
    });
  }

  app.get('/dead-letters', async (c) => {
    const denied = operatorOnly(c);
    if (denied) return denied;
    const done = c.req.query('done');
    const count = Number(c.req.query('count') ?? 0);
    const what = c.req.query('what') === 'parked' ? 'parked row' : 'dead letter';
    const flash =
      done === 'redriven'
        ? {
            tone: 'ok' as const,
            text:
              count > 0
                ? `Redriven ${count} ${what}${count === 1 ? '' : 's'}${c.req.query('refs') ? ` (${c.req.query('refs')})` : ''}. ${what === 'dead letter' ? 'The scorer consumes it again; the evaluation status below changes once it is scored.' : 'The relay publishes it again with the same event id.'}`
                : `Nothing was redriven: the ${what} was already redriven or is gone.`,
          }
        : undefined;
    return c.html(deadLettersPage(c.get('viewer'), { parked: await settled(parkedRows(db, 200)), flash }));
  });

  app.get('/dead-letters/records', async (c) => {
    const denied = operatorOnly(c);
    if (denied) return denied;
    return c.html(deadLetterRecords(config.topics.dlt, await settled(deadLetterViews())));
  });

  app.get('/dead-letters/redrive', async (c) => {
    const denied = operatorOnly(c);
    if (denied) return denied;
    const viewer = c.get('viewer');
    const all = c.req.query('all') === '1';
    const ref = c.req.query('ref') ?? '';
    if (!all && !/^\d+:\d+$/.test(ref)) return c.html(messagePage(viewer, 'Nothing to redrive', 'Choose a dead letter on the dead-letters page.'), 400);
    const views = await settled(deadLetterViews());
    if (!views.ok)
      return c.html(messagePage(viewer, 'Kafka is not answering', html`Could not read ${config.topics.dlt}: ${(views.error as Error).message}`), 503);
    const chosen = all ? views.value : views.value.filter((v) => v.record.ref === ref);
    if (chosen.length === 0)
      return c.html(messagePage(viewer, 'Nothing to redrive', all ? 'The dead-letter topic is empty.' : `There is no dead letter ${ref}.`), 404);
    const one = chosen[0] as DeadLetterView;
    return c.html(
      confirmPage(viewer, {
        title: all ? `Redrive ${chosen.length} dead letters?` : `Redrive dead letter ${ref}?`,
        question: all
          ? html`Every record on <code>${config.topics.dlt}</code> (${chosen.length}) is republished to its original topic with its key, value and headers.
              Scoring is idempotent: evaluations already scored do not change.`
          : html`The record is republished to <code>${one.record.headers.dlt_original_topic ?? '?'}</code> with its key, value and headers, and the scorer tries
              its failed dimensions again. Safe to repeat.`,
        detail: all
          ? undefined
          : html`<dl class="facts">
              <dt>Reason</dt>
              <dd><code>${one.record.headers.dlt_error_code ?? '?'}</code> ${one.record.headers.dlt_error_message ?? ''}</dd>
              <dt>Dimension</dt>
              <dd>${(one.record.headers.dlt_dimension || '—').split(',').join(', ')}</dd>
              <dt>Evaluation</dt>
              <dd class="mono">${one.evaluationId ?? '—'}</dd>
            </dl>`,
        action: '/dead-letters/redrive',
        fields: all ? { all: '1' } : { ref },
        cancel: '/dead-letters',
      }),
    );
  });

  app.post('/dead-letters/redrive', async (c) => {
    const denied = operatorOnly(c);
    if (denied) return denied;
    const viewer = c.get('viewer');
    const form = await c.req.parseBody();
    const all = form.all === '1';
    const ref = typeof form.ref === 'string' ? form.ref : '';
    if (!all && !/^\d+:\d+$/.test(ref)) return c.html(messagePage(viewer, 'Nothing to redrive', 'Choose a dead letter on the dead-letters page.'), 400);
    try {
      const records = await readDeadLetters(config.kafkaBrokers, config.topics.dlt);
      const chosen = all ? records : records.filter((r) => r.ref === ref);
      const redriven = await redriveDeadLetters(await dltProducer.get(), config.topics.dlt, chosen);
      logger.info({ redriven, all }, 'dead letters redriven from the console');
      return c.redirect(`/dead-letters${query({ done: 'redriven', what: 'dlt', count: redriven.length, refs: redriven.slice(0, 10).join(', ') })}`, 303);
    } catch (error) {
      logger.warn({ err: error }, 'dead-letter redrive failed');
      return c.html(
        messagePage(viewer, 'Redrive failed', html`Kafka did not take the records: ${(error as Error).message}. Nothing was lost; try again.`),
        503,
      );
    }
  });

  app.get('/parked/redrive', async (c) => {
    const denied = operatorOnly(c);
    if (denied) return denied;
    const viewer = c.get('viewer');
    const all = c.req.query('all') === '1';
    const id = c.req.query('id') ?? '';
    if (!all && !isUuid(id)) return c.html(messagePage(viewer, 'Nothing to redrive', 'Choose a parked row on the dead-letters page.'), 400);
    const rows = (await parkedRows(db, 1000)).filter((r) => !r.redriven_at && (all || r.id === id));
    if (rows.length === 0) return c.html(messagePage(viewer, 'Nothing to redrive', 'No parked row waits for a redrive.'), 404);
    const one = rows[0];
    return c.html(
      confirmPage(viewer, {
        title: all ? `Redrive ${rows.length} parked rows?` : 'Redrive this parked row?',
        question: html`The row${all ? 's go' : ' goes'} back into the outbox with the same event id, and the relay publishes ${all ? 'them' : 'it'} again. Fix
          the cause first (raise the broker's <code>message.max.bytes</code>, create the topic), or ${all ? 'they are' : 'it is'} parked again.`,
        detail:
          all || !one
            ? undefined
            : html`<dl class="facts">
                <dt>Event</dt>
                <dd class="mono">${one.id}</dd>
                <dt>Topic</dt>
                <dd>${one.topic}</dd>
                <dt>Reason</dt>
                <dd><code>${one.error_code}</code> ${one.error_message}</dd>
              </dl>`,
        action: '/parked/redrive',
        fields: all ? { all: '1' } : { id },
        cancel: '/dead-letters',
      }),
    );
  });

  app.post('/parked/redrive', async (c) => {
    const denied = operatorOnly(c);
    if (denied) return denied;
    const form = await c.req.parseBody();
    const all = form.all === '1';
    const id = typeof form.id === 'string' ? form.id : '';
    if (!all && !isUuid(id)) return c.html(messagePage(c.get('viewer'), 'Nothing to redrive', 'Choose a parked row on the dead-letters page.'), 400);
    const ids = await redriveParked(db, all ? { all: true } : { id });
    logger.info({ redriven: ids, all }, 'parked rows redriven from the console');
    return c.redirect(`/dead-letters${query({ done: 'redriven', what: 'parked', count: ids.length })}`, 303);
  });

  return {
    app,
    async close() {
      await Promise.all([kafka?.close(), dltProducer.close()]);
    },
  };
}

export type { Html };
