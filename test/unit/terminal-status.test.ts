// The one module that decides what is final: reuse of stored results, terminal evaluations, and
// the status an evaluation's rows give it.
import { describe, expect, it } from '@jest/globals';
import { evaluationStatus, isResult, isTerminalEvaluation, keepsStoredResult } from '../../consumers/terminal-status.js';

const rows = (...statuses: [string, string][]) => statuses.map(([dimension, status]) => ({ dimension, status }));

describe('terminal status', () => {
  it('SCORED when no requested dimension is ERROR, SCORING_FAILED when all are, PARTIALLY_SCORED otherwise', () => {
    expect(evaluationStatus(['a', 'b'], rows(['a', 'COMPLETED'], ['b', 'SKIPPED']))).toBe('SCORED');
    expect(evaluationStatus(['a', 'b'], rows(['a', 'ERROR'], ['b', 'ERROR']))).toBe('SCORING_FAILED');
    expect(evaluationStatus(['a', 'b'], rows(['a', 'COMPLETED'], ['b', 'ERROR']))).toBe('PARTIALLY_SCORED');
    expect(evaluationStatus(['a'], rows(['a', 'SKIPPED']))).toBe('SCORED');
  });

  it('is not terminal while a requested dimension has no row or a PENDING one', () => {
    expect(evaluationStatus(['a', 'b'], rows(['a', 'COMPLETED']))).toBeUndefined();
    expect(evaluationStatus(['a', 'b'], rows(['a', 'COMPLETED'], ['b', 'PENDING']))).toBeUndefined();
    expect(evaluationStatus(['a'], [])).toBeUndefined();
  });

  it('rows of dimensions that were not requested do not count (an ERROR there fails nothing)', () => {
    expect(evaluationStatus(['a'], rows(['a', 'COMPLETED'], ['x', 'ERROR']))).toBe('SCORED');
    expect(evaluationStatus(['a', 'b'], rows(['a', 'COMPLETED'], ['x', 'ERROR']))).toBeUndefined();
  });

  it('a terminal evaluation has a terminal status and a written row for every requested dimension', () => {
    const map = (...r: [string, string][]) => new Map(r.map(([d, status]) => [d, { status }]));
    expect(isTerminalEvaluation({ status: 'SCORED', dimensions: ['a'] }, map(['a', 'COMPLETED']))).toBe(true);
    expect(isTerminalEvaluation({ status: 'PARTIALLY_SCORED', dimensions: ['a', 'b'] }, map(['a', 'COMPLETED'], ['b', 'ERROR']))).toBe(true);
    expect(isTerminalEvaluation({ status: 'PENDING', dimensions: ['a'] }, map(['a', 'COMPLETED']))).toBe(false);
    expect(isTerminalEvaluation({ status: 'SCORED', dimensions: ['a', 'b'] }, map(['a', 'COMPLETED']))).toBe(false);
    expect(isTerminalEvaluation({ status: 'SCORED', dimensions: ['a'] }, map(['a', 'PENDING']))).toBe(false);
  });

  it('a COMPLETED or SKIPPED row of the same scorer version is kept, never scored (or paid for) twice', () => {
    expect(isResult('COMPLETED') && isResult('SKIPPED')).toBe(true);
    expect(isResult('ERROR') || isResult('PENDING') || isResult(undefined)).toBe(false);
    expect(keepsStoredResult({ status: 'COMPLETED', scorer_version: '2' }, '2', false)).toBe(true);
    expect(keepsStoredResult({ status: 'SKIPPED', scorer_version: '2' }, '2', false)).toBe(true);
    // another version is scored again; an ERROR row always is; no row is scored
    expect(keepsStoredResult({ status: 'COMPLETED', scorer_version: '1' }, '2', false)).toBe(false);
    expect(keepsStoredResult({ status: 'ERROR', scorer_version: '2' }, '2', false)).toBe(false);
    expect(keepsStoredResult(undefined, '2', false)).toBe(false);
    // no scorer configured here: a result is not kept on its version (there is none to compare)
    expect(keepsStoredResult({ status: 'COMPLETED', scorer_version: '2' }, undefined, false)).toBe(false);
  });

  it('a redrive of a terminal evaluation keeps every result whatever its version, and retries only ERROR rows', () => {
    expect(keepsStoredResult({ status: 'COMPLETED', scorer_version: '1' }, '2', true)).toBe(true);
    expect(keepsStoredResult({ status: 'COMPLETED', scorer_version: '1' }, undefined, true)).toBe(true);
    expect(keepsStoredResult({ status: 'ERROR', scorer_version: '1' }, '1', true)).toBe(false);
  });
});
