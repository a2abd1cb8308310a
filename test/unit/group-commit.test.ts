// The group committer alone (no database): which requests share a group, in what order, and that
// every member learns the fate of its own rows only once the group's write has settled.
import { describe, expect, it } from '@jest/globals';
import { createGroupCommitter } from '../../src/api/group-commit.js';

function recorder() {
  const groups: string[][] = [];
  let release: () => void = () => {};
  let gate: Promise<void> = Promise.resolve();
  return {
    groups,
    hold() {
      gate = new Promise((resolve) => (release = resolve));
    },
    release: () => release(),
    write: async (rows: string[]) => {
      groups.push(rows);
      await gate;
      return rows.map((row) => `ok:${row}`);
    },
  };
}

describe('group commit', () => {
  it('requests within the window share one write, in arrival order, and each gets its own rows back', async () => {
    const r = recorder();
    const submit = createGroupCommitter(r.write, { enabled: true, windowMs: 20, maxRows: 100 });
    const results = await Promise.all([submit(['a']), submit(['b1', 'b2']), submit(['c'])]);
    expect(r.groups).toEqual([['a', 'b1', 'b2', 'c']]);
    expect(results).toEqual([['ok:a'], ['ok:b1', 'ok:b2'], ['ok:c']]);
  });

  it('a group is written as soon as it holds maxRows rows, and a request is never split across groups', async () => {
    const r = recorder();
    const submit = createGroupCommitter(r.write, { enabled: true, windowMs: 10_000, maxRows: 3 });
    const results = await Promise.all([submit(['a', 'b']), submit(['c', 'd']), submit(['e']), submit(['f', 'g'])]);
    expect(r.groups).toEqual([
      ['a', 'b', 'c', 'd'],
      ['e', 'f', 'g'],
    ]);
    expect(results.flat()).toEqual(['ok:a', 'ok:b', 'ok:c', 'ok:d', 'ok:e', 'ok:f', 'ok:g']);
  });

  it('no member settles before the group write has, and a failed write fails every member', async () => {
    const r = recorder();
    r.hold();
    const submit = createGroupCommitter(r.write, { enabled: true, windowMs: 0, maxRows: 100 });
    let settled = 0;
    const pending = [submit(['a']), submit(['b'])].map((p) => p.finally(() => settled++));
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(r.groups).toEqual([['a', 'b']]);
    expect(settled).toBe(0);
    r.release();
    await Promise.all(pending);
    expect(settled).toBe(2);

    const failing = createGroupCommitter<string, string>(
      async () => {
        throw new Error('connection lost');
      },
      { enabled: true, windowMs: 0, maxRows: 100 },
    );
    const outcomes = await Promise.allSettled([failing(['x']), failing(['y'])]);
    expect(outcomes.map((o) => o.status)).toEqual(['rejected', 'rejected']);
  });

  it('off: every request is written on its own', async () => {
    const r = recorder();
    const submit = createGroupCommitter(r.write, { enabled: false, windowMs: 10, maxRows: 100 });
    await Promise.all([submit(['a']), submit(['b', 'c'])]);
    expect(r.groups).toEqual([['a'], ['b', 'c']]);
  });
});
