// deploy/ and docker-compose.yml checked with real tools: promtool for the Prometheus files, the
// Kubernetes (and KEDA) schemas for every manifest the kustomization references, the metrics the
// running processes really expose for every alert, panel and autoscaler query, the CLI and the
// configuration for docker-compose.yml.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import { commands } from '../src/cli/main.js';
import { loadConfig } from '../src/config.js';
import { relayRuntimeEnv } from '../src/process.js';
import { freePort } from '../src/stack/process.js';
import { startFakeJudge, type FakeJudge } from '../src/fake-judge/server.js';
import { createTestDatabase, kafkaBrokers, uniqueName, waitFor, type TestDatabase } from './helpers.js';
import { exposedSeriesNames, metricNamesIn } from './promql.js';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const k8sDir = path.join(root, 'deploy/k8s/base');
const alertsFile = path.join(root, 'deploy/prometheus/alerts.yml');

interface Trigger {
  type: string;
  metadata: { query: string };
}
interface ManifestSpec {
  replicas?: unknown;
  selector?: unknown;
  template?: { spec: { terminationGracePeriodSeconds?: number } };
  scaleTargetRef?: { name: string };
  triggers?: Trigger[];
  maxReplicaCount?: number;
}
interface Manifest {
  apiVersion: string;
  kind: string;
  metadata?: { name?: string };
  spec?: ManifestSpec;
  data?: Record<string, string>;
  stringData?: Record<string, string>;
}

function kustomization(): { resources: string[] } {
  return parseYaml(fs.readFileSync(path.join(k8sDir, 'kustomization.yaml'), 'utf8')) as { resources: string[] };
}

/** Every document of every file the kustomization references. */
function manifests(): { file: string; manifest: Manifest }[] {
  return kustomization().resources.flatMap((file) =>
    parseAllDocuments(fs.readFileSync(path.join(k8sDir, file), 'utf8'))
      .map((doc) => {
        if (doc.errors.length) throw new Error(`${file}: ${doc.errors[0]?.message}`);
        return doc.toJS() as Manifest | null;
      })
      .filter((m): m is Manifest => m !== null)
      .map((manifest) => ({ file, manifest })),
  );
}

/** The model class of kubernetes-models (or a CRD package) for an apiVersion and kind. */
async function modelFor(apiVersion: string, kind: string): Promise<new (data: unknown) => { validate(): void }> {
  const packages: Record<string, string> = { 'keda.sh': '@kubernetes-models/keda' };
  const group = apiVersion.includes('/') ? (apiVersion.split('/')[0] as string) : '';
  const pkg = packages[group] ?? 'kubernetes-models';
  const module = (await import(`${pkg}/${apiVersion}/${kind}`)) as Record<string, unknown>;
  const model = (module[kind] ?? module.default) as (new (data: unknown) => { validate(): void }) | undefined;
  if (!model) throw new Error(`no model for ${apiVersion} ${kind}`);
  return model;
}

async function validateManifest(manifest: Manifest): Promise<void> {
  const Model = await modelFor(manifest.apiVersion, manifest.kind);
  new Model(manifest).validate();
}

function promtool(...args: string[]) {
  return spawnSync('promtool', args, { encoding: 'utf8' });
}

describe('Prometheus files (promtool)', () => {
  it('the alert rules pass promtool check rules', () => {
    const result = promtool('check', 'rules', alertsFile);
    expect(`${result.stdout}${result.stderr}`).toContain('SUCCESS');
    expect(result.status).toBe(0);
  });

  it('promtool rejects a rule with a broken expression (the check can fail)', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rules-'));
    const broken = fs.readFileSync(alertsFile, 'utf8').replace('> 60', '> > 60');
    fs.writeFileSync(path.join(dir, 'alerts.yml'), broken);
    expect(promtool('check', 'rules', path.join(dir, 'alerts.yml')).status).not.toBe(0);
    fs.rmSync(dir, { recursive: true });
  });

  it('the scrape configuration passes promtool check config with the alert rules it loads', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'prom-'));
    fs.copyFileSync(alertsFile, path.join(dir, 'alerts.yml'));
    const config = fs
      .readFileSync(path.join(root, 'deploy/prometheus/prometheus.yml'), 'utf8')
      .replace('/etc/prometheus/alerts.yml', path.join(dir, 'alerts.yml'));
    fs.writeFileSync(path.join(dir, 'prometheus.yml'), config);
    const result = promtool('check', 'config', path.join(dir, 'prometheus.yml'));
    expect(`${result.stdout}${result.stderr}`).toMatch(/SUCCESS/);
    expect(result.status).toBe(0);
    fs.rmSync(dir, { recursive: true });
  });
});

describe('Kubernetes manifests', () => {
  it('the kustomization references every manifest in its folder, and each exists', () => {
    const listed = kustomization().resources.sort();
    const present = fs
      .readdirSync(k8sDir)
      .filter((f) => /\.ya?ml$/.test(f) && f !== 'kustomization.yaml')
      .sort();
    expect(listed).toEqual(present);
  });

  it('every manifest the kustomization references is valid against the Kubernetes (and KEDA) schemas', async () => {
    const all = manifests();
    expect(all.length).toBeGreaterThanOrEqual(10);
    for (const { file, manifest } of all) {
      await expect(validateManifest(manifest).then(() => 'valid')).resolves.toBe('valid');
      expect(`${file} ${manifest.kind}`).toBeTruthy();
    }
  });

  it('a manifest with a field of the wrong type, or without a required one, fails validation (the check can fail)', async () => {
    const relay = manifests().find((m) => m.manifest.kind === 'Deployment' && m.manifest.metadata?.name === 'evalbox-relay')!.manifest;
    const broken = structuredClone(relay);
    broken.spec!.replicas = 'two';
    await expect(validateManifest(broken)).rejects.toThrow(/replicas/);
    const unselected = structuredClone(relay);
    delete unselected.spec!.selector;
    await expect(validateManifest(unselected)).rejects.toThrow(/selector/);
    // Kubernetes' published schemas do not close objects, so a misspelt field name passes here;
    // the API server's strict field validation (kubectl's default) is what rejects it.
  });

  it("the relay Deployment's termination grace period covers the relay's drain bound", () => {
    const relay = manifests().find((m) => m.manifest.kind === 'Deployment' && m.manifest.metadata?.name === 'evalbox-relay')!.manifest;
    const graceSeconds = relay.spec!.template!.spec.terminationGracePeriodSeconds!;
    // On SIGTERM the relay waits for its in-flight batches for at most one lease TTL, then
    // releases its leases: that must end before Kubernetes kills the pod.
    const { leaseTtlMs } = loadConfig({}).relay;
    expect(graceSeconds * 1000).toBeGreaterThanOrEqual(leaseTtlMs + 5_000);
  });

  it('the scorer scales on consumer lag: a KEDA ScaledObject on the scorer Deployment queries the lag its replicas expose', () => {
    const all = manifests().map((m) => m.manifest);
    const scaled = all.find((m) => m.kind === 'ScaledObject');
    expect(scaled?.spec?.scaleTargetRef?.name).toBe('evalbox-scorer');
    expect(all.some((m) => m.kind === 'Deployment' && m.metadata?.name === 'evalbox-scorer')).toBe(true);
    const trigger = scaled?.spec?.triggers?.[0];
    expect(trigger?.type).toBe('prometheus');
    expect(metricNamesIn(trigger?.metadata.query ?? '')).toEqual(['evalbox_consumer_lag_messages']);
    // No more replicas than the events topic has partitions: the rest would get no work.
    expect(scaled?.spec?.maxReplicaCount).toBeLessThanOrEqual(6);
  });
});

describe('docker-compose.yml', () => {
  const compose = parseYaml(fs.readFileSync(path.join(root, 'docker-compose.yml'), 'utf8'), { merge: true }) as {
    services: Record<string, { image?: string; command?: string[]; environment?: Record<string, string> }>;
  };
  const evalboxServices = Object.entries(compose.services).filter(([, s]) => s.image === 'evalbox:local');

  /** The environment variables the configuration reads, recorded by reading it. */
  function variablesTheConfigurationReads(): Set<string> {
    const read = new Set<string>();
    const env = new Proxy<Record<string, string | undefined>>(
      {},
      {
        get: (_target, name) => {
          if (typeof name === 'string') read.add(name);
          return undefined;
        },
      },
    );
    loadConfig(env, {});
    return read;
  }

  it('every evalbox service runs a real CLI subcommand', () => {
    expect(evalboxServices.map(([name]) => name)).toEqual(expect.arrayContaining(['migrate', 'api', 'relay', 'scorer']));
    for (const [, service] of evalboxServices) {
      if (!service.command) continue;
      expect(commands.map((c) => c.name)).toContain(service.command[0]);
    }
  });

  it('every environment variable of an evalbox service, and of the Kubernetes ConfigMap, is one the configuration reads', () => {
    // Plus what the Node runtime and glibc read at the relay's start (relayRuntimeEnv).
    const known = new Set([...variablesTheConfigurationReads(), ...Object.keys(relayRuntimeEnv({}))]);
    expect(known.has('EVALBOX_ADMIN_PORT')).toBe(true);
    for (const [name, service] of evalboxServices) {
      for (const variable of Object.keys(service.environment ?? {}))
        expect(`${name}: ${variable} ${known.has(variable) ? 'read' : 'NOT READ'}`).toBe(`${name}: ${variable} read`);
    }
    for (const { manifest } of manifests().filter((m) => m.manifest.kind === 'ConfigMap' || m.manifest.kind === 'Secret')) {
      const data = { ...(manifest.data ?? {}), ...(manifest.stringData ?? {}) };
      for (const variable of Object.keys(data))
        expect(`${manifest.kind}: ${variable} ${known.has(variable) ? 'read' : 'NOT READ'}`).toBe(`${manifest.kind}: ${variable} read`);
    }
  });

  it('the check can fail: a misspelt variable is not one the configuration reads', () => {
    expect(variablesTheConfigurationReads().has('EVALBOX_ADMINPORT')).toBe(false);
  });
});

describe('queried metrics exist', () => {
  let database: TestDatabase;
  let judge: FakeJudge;
  const children: ChildProcess[] = [];
  const exposed = new Set<string>();

  beforeAll(async () => {
    database = await createTestDatabase({ max: 2 });
    judge = await startFakeJudge({ port: 0 });
    const topic = uniqueName('deploy-events');
    const env = {
      ...process.env,
      DATABASE_URL: database.url,
      KAFKA_BROKERS: kafkaBrokers(),
      EVALBOX_TOPIC_EVENTS: topic,
      EVALBOX_TOPIC_SCORES: `${topic}-scores`,
      EVALBOX_TOPIC_DLT: `${topic}.DLT`,
      EVALBOX_SCORER_GROUP: uniqueName('deploy-scorer'),
      EVALBOX_JUDGE_BASE_URL: judge.url,
      EVALBOX_JUDGE_MODEL: 'fake-judge-1',
    };
    const ports: number[] = [];
    for (const args of [['api', '--port', '0'], ['relay'], ['scorer']]) {
      const port = await freePort();
      ports.push(port);
      children.push(spawn('node', ['bin/evalbox.js', ...args, '--admin-port', String(port)], { env, stdio: 'ignore' }));
    }
    for (const port of ports) {
      const text = await waitFor(
        async () => {
          const response = await fetch(`http://127.0.0.1:${port}/metrics`);
          return response.ok ? response.text() : undefined;
        },
        { timeoutMs: 90_000, what: `/metrics on ${port}` },
      );
      for (const name of exposedSeriesNames(text)) exposed.add(name);
    }
  });
  afterAll(async () => {
    for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
    await judge?.close();
    await database?.drop();
  });

  function queries(): { where: string; expr: string }[] {
    const out: { where: string; expr: string }[] = [];
    const rules = parseYaml(fs.readFileSync(alertsFile, 'utf8')) as { groups: { rules: { alert: string; expr: string }[] }[] };
    for (const group of rules.groups) for (const rule of group.rules) out.push({ where: `alert ${rule.alert}`, expr: rule.expr });
    const dashboard = JSON.parse(fs.readFileSync(path.join(root, 'deploy/grafana/evalbox-dashboard.json'), 'utf8')) as {
      panels: { title: string; targets?: { expr: string }[] }[];
    };
    for (const panel of dashboard.panels) for (const target of panel.targets ?? []) out.push({ where: `panel "${panel.title}"`, expr: target.expr });
    for (const { manifest } of manifests().filter((m) => m.manifest.kind === 'ScaledObject'))
      for (const trigger of manifest.spec?.triggers ?? []) out.push({ where: `ScaledObject ${manifest.metadata?.name}`, expr: trigger.metadata.query });
    return out;
  }

  it('the extractor reads metric names, not functions, labels or keywords', () => {
    expect(metricNamesIn('histogram_quantile(0.99, sum by (le, route) (rate(http_request_duration_seconds_bucket{status=~"5.."}[5m]))) > 1')).toEqual([
      'http_request_duration_seconds_bucket',
    ]);
    expect(metricNamesIn('sum(rate(a_total[1m])) / sum(rate(b_total[1m])) > 0.01')).toEqual(['a_total', 'b_total']);
  });

  it('every metric an alert, a dashboard panel or the autoscaler queries is exposed by the api, relay or scorer', () => {
    const all = queries();
    expect(all.length).toBeGreaterThan(15);
    const missing = all.flatMap(({ where, expr }) =>
      metricNamesIn(expr)
        .filter((name) => !exposed.has(name))
        .map((name) => `${where}: ${name}`),
    );
    expect(missing).toEqual([]);
    // The check can fail: a name no process exposes is reported.
    expect(exposed.has('evalbox_relay_published_events')).toBe(false);
    expect(exposed.has('evalbox_consumer_lag_messages')).toBe(true);
  });
});
