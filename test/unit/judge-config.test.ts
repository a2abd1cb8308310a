// Judge configuration: one endpoint from the environment, several from a JSON file with
// per-dimension routing, prices and user-defined rubrics; errors that name the field; judge
// dimensions that the registry accepts; a user rubric and a routed dimension scored for real.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createDimensionRegistry } from '../../src/dimensions.js';
import { ConfigError } from '../../src/errors.js';
import { costOf, judgeDimensionDefinitions, loadJudgeConfig } from '../../consumers/judge/config.js';
import { createJudge } from '../../consumers/judge/judge.js';
import { compileRubric, BUILTIN_RUBRICS, JUDGE_DIMENSIONS } from '../../consumers/judge/rubrics.js';
import { startFakeJudge, type FakeJudge } from '../../src/fake-judge/server.js';

const fileEnv = (file: unknown, env: Record<string, string> = {}) => [{ EVALBOX_JUDGE_CONFIG: '/etc/judge.json', ...env }, () => JSON.stringify(file)] as const;

describe('judge configuration', () => {
  it('is absent when nothing is configured (the pipeline then runs offline)', () => {
    expect(loadJudgeConfig({})).toBeUndefined();
  });

  it('builds one endpoint from EVALBOX_JUDGE_BASE_URL / _MODEL / _API_KEY', () => {
    const config = loadJudgeConfig({
      EVALBOX_JUDGE_BASE_URL: 'https://api.example.com/v1',
      EVALBOX_JUDGE_MODEL: 'gpt-x',
      EVALBOX_JUDGE_API_KEY: 'sk-1',
      EVALBOX_JUDGE_CONCURRENCY: '16',
      EVALBOX_JUDGE_TIMEOUT_MS: '9000',
    });
    expect(config?.endpoints).toEqual([
      expect.objectContaining({
        name: 'default',
        baseUrl: 'https://api.example.com/v1',
        model: 'gpt-x',
        apiKey: 'sk-1',
        maxConcurrency: 16,
        timeoutMs: 9000,
        responseFormat: 'json_schema',
      }),
    ]);
    expect(config?.defaultEndpoint).toBe('default');
    expect(config?.rubrics.map((r) => r.id)).toEqual(['judge_faithfulness', 'judge_relevance', 'judge_helpfulness', 'judge_toxicity']);
    expect(() => loadJudgeConfig({ EVALBOX_JUDGE_BASE_URL: 'https://x' })).toThrow(/EVALBOX_JUDGE_MODEL/);
    expect(() => loadJudgeConfig({ EVALBOX_JUDGE_BASE_URL: 'https://x', EVALBOX_JUDGE_MODEL: 'm', EVALBOX_JUDGE_CONCURRENCY: '0' })).toThrow(ConfigError);
  });

  it('reads endpoints, routing, prices and user rubrics from EVALBOX_JUDGE_CONFIG', () => {
    const config = loadJudgeConfig(
      ...fileEnv(
        {
          endpoints: [
            { name: 'cheap', baseUrl: 'http://a', model: 'small', apiKeyEnv: 'CHEAP_KEY' },
            { name: 'smart', baseUrl: 'http://b', model: 'large', maxConcurrency: 2, breaker: { coolDownMs: 1000 } },
          ],
          defaultEndpoint: 'cheap',
          dimensions: { judge_faithfulness: { endpoint: 'smart', samplingRate: 0.25 }, judge_toxicity: { enabled: false } },
          prices: { small: { inputPerMTok: 0.15, outputPerMTok: 0.6 } },
          rubrics: [
            {
              id: 'judge_tone',
              name: 'Tone',
              criteria: 'Is it polite?',
              inputs: ['response'],
              labels: [
                { label: 'rude', value: 0 },
                { label: 'polite', value: 1 },
              ],
            },
          ],
        },
        { CHEAP_KEY: 'sk-cheap' },
      ),
    );
    expect(config?.endpoints.map((e) => [e.name, e.apiKey, e.maxConcurrency])).toEqual([
      ['cheap', 'sk-cheap', 8],
      ['smart', undefined, 2],
    ]);
    const dims = judgeDimensionDefinitions(config!);
    expect(dims.map((d) => d.id)).toEqual(['judge_faithfulness', 'judge_relevance', 'judge_helpfulness', 'judge_tone']);
    expect(dims.find((d) => d.id === 'judge_faithfulness')?.samplingRate).toBe(0.25);
    expect(dims.find((d) => d.id === 'judge_tone')).toMatchObject({
      scorerKind: 'LLM_JUDGE',
      scorerName: 'llm-judge-tone',
      scorerVersion: '1',
      requiredInputs: ['response'],
      direction: 'higher_is_better',
    });
    expect(costOf(config!.prices, 'small', 1_000_000, 1_000_000)).toBeCloseTo(0.75, 10);
    expect(costOf(config!.prices, 'large', 10, 10)).toBeNull();
  });

  it('names the failing field of an invalid file, and refuses inconsistent references', () => {
    expect(() => loadJudgeConfig(...fileEnv({ endpoints: [{ name: 'x', baseUrl: 'ftp://nope', model: 'm' }] }))).toThrow(/\/endpoints\/0\/baseUrl/);
    expect(() => loadJudgeConfig(...fileEnv({ endpoints: [{ name: 'x', baseUrl: 'http://a', model: 'm', maxConcurency: 3 }] }))).toThrow(/maxConcurency/);
    expect(() =>
      loadJudgeConfig(...fileEnv({ endpoints: [{ name: 'x', baseUrl: 'http://a', model: 'm' }], dimensions: { judge_relevance: { endpoint: 'y' } } })),
    ).toThrow(/unknown endpoint "y"/);
    expect(() =>
      loadJudgeConfig(
        ...fileEnv({
          endpoints: [{ name: 'x', baseUrl: 'http://a', model: 'm' }],
          rubrics: [{ id: 'judge_relevance', name: 'n', criteria: 'c', inputs: ['response'] }],
        }),
      ),
    ).toThrow(/defined twice/);
    expect(() => loadJudgeConfig(...fileEnv({ endpoints: [{ name: 'x', baseUrl: 'http://a', model: 'm', apiKeyEnv: 'MISSING_KEY' }] }))).toThrow(/MISSING_KEY/);
    expect(() => loadJudgeConfig({ EVALBOX_JUDGE_CONFIG: '/nope.json' }, () => '{not json')).toThrow(ConfigError);
  });

  it('judge dimensions fit the dimensions registry next to the heuristic ones', () => {
    const registry = createDimensionRegistry(JUDGE_DIMENSIONS);
    expect(registry.get('judge_toxicity')).toMatchObject({ scorerKind: 'LLM_JUDGE', direction: 'lower_is_better', requiredInputs: ['response'] });
    expect(registry.get('toxicity')?.scorerKind).toBe('HEURISTIC');
    expect(registry.list()).toHaveLength(6 + 4);
  });

  it('the prompt hash changes with the rubric text or version, not with anything else', () => {
    const base = BUILTIN_RUBRICS[1]!;
    const hash = compileRubric(base).promptHash;
    expect(compileRubric({ ...base }).promptHash).toBe(hash);
    expect(compileRubric({ ...base, version: '2' }).promptHash).not.toBe(hash);
    expect(compileRubric({ ...base, criteria: `${base.criteria} Be strict.` }).promptHash).not.toBe(hash);
  });
});

describe('judge configuration in use', () => {
  let cheap: FakeJudge;
  let smart: FakeJudge;
  beforeAll(async () => {
    cheap = await startFakeJudge({ model: 'small' });
    smart = await startFakeJudge({ model: 'large' });
  });
  afterAll(async () => {
    await cheap.close();
    await smart.close();
  });

  it('routes a dimension to its endpoint and scores a user-defined rubric (1..10 scale and labels)', async () => {
    const config = loadJudgeConfig(
      ...fileEnv({
        endpoints: [
          { name: 'cheap', baseUrl: cheap.url, model: 'small' },
          { name: 'smart', baseUrl: smart.url, model: 'large' },
        ],
        dimensions: { judge_faithfulness: { endpoint: 'smart' } },
        rubrics: [
          {
            id: 'judge_conciseness',
            name: 'Conciseness',
            criteria: 'Is it as short as it can be?',
            inputs: ['prompt', 'response'],
            scale: { min: 1, max: 10 },
          },
          {
            id: 'judge_tone',
            name: 'Tone',
            criteria: 'Is it polite?',
            inputs: ['response'],
            labels: [
              { label: 'rude', value: 0 },
              { label: 'neutral', value: 0.5 },
              { label: 'polite', value: 1 },
            ],
          },
        ],
      }),
    )!;
    const judge = createJudge({ config });
    try {
      const inputs = { prompt: 'Opening hours?', response: 'Nine to five, Monday to Friday.', context: 'We open 9-17 on weekdays.' };
      const concise = await judge.score('judge_conciseness', inputs);
      expect(concise).toMatchObject({ status: 'COMPLETED', judgeModel: 'small', endpoint: 'cheap' });
      expect(concise.rawValue).toBeGreaterThanOrEqual(1);
      expect(concise.rawValue).toBeLessThanOrEqual(10);
      expect(concise.value).toBeCloseTo(((concise.rawValue as number) - 1) / 9, 10);
      const tone = await judge.score('judge_tone', inputs);
      expect(['rude', 'neutral', 'polite']).toContain(tone.label);
      expect(tone.value).toBe({ rude: 0, neutral: 0.5, polite: 1 }[tone.label as 'rude']);
      const faithful = await judge.score('judge_faithfulness', inputs);
      expect(faithful).toMatchObject({ status: 'COMPLETED', judgeModel: 'large', endpoint: 'smart' });
      expect(judge.endpointOf('judge_faithfulness')).toBe('smart');
      expect([cheap.stats().total, smart.stats().total]).toEqual([2, 1]);
      expect([...judge.scorers().keys()]).toEqual([
        'judge_faithfulness',
        'judge_relevance',
        'judge_helpfulness',
        'judge_toxicity',
        'judge_conciseness',
        'judge_tone',
      ]);
    } finally {
      await judge.close();
    }
  });
});
