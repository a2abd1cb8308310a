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
    const submit = createGroupCommitter(r.write, { enabled: true, windowMs: 20, maxRows: 100, maxInFlight: 0 });
    const results = await Promise.all([submit(['a']), submit(['b1', 'b2']), submit(['c'])]);
    expect(r.groups).toEqual([['a', 'b1', 'b2', 'c']]);
    expect(results).toEqual([['ok:a'], ['ok:b1', 'ok:b2'], ['ok:c']]);
  });

  it('a group is written as soon as it holds maxRows rows, and a request is never split across groups', async () => {
    const r = recorder();
    const submit = createGroupCommitter(r.write, { enabled: true, windowMs: 10_000, maxRows: 3, maxInFlight: 0 });
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
    const submit = createGroupCommitter(r.write, { enabled: true, windowMs: 0, maxRows: 100, maxInFlight: 0 });
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
      { enabled: true, windowMs: 0, maxRows: 100, maxInFlight: 0 },
    );
    const outcomes = await Promise.allSettled([failing(['x']), failing(['y'])]);
    expect(outcomes.map((o) => o.status)).toEqual(['rejected', 'rejected']);
  });

  it('with maxInFlight 1, units that arrive while a group is in flight start no second write, and go out as ONE group when it finishes', async () => {
    const r = recorder();
    r.hold();
    const submit = createGroupCommitter(r.write, { enabled: true, windowMs: 0, maxRows: 100, maxInFlight: 1 });
    const first = submit(['a']);
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(r.groups).toEqual([['a']]);
    const later = [submit(['b']), submit(['c1', 'c2'])];
    // Several windows pass while the first group is still in flight: nothing else is written.
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(r.groups).toEqual([['a']]);
    r.release();
    expect(await first).toEqual(['ok:a']);
    expect(await Promise.all(later)).toEqual([['ok:b'], ['ok:c1', 'ok:c2']]);
    expect(r.groups).toEqual([['a'], ['b', 'c1', 'c2']]);
  });

  it('with maxInFlight 2, a third group waits for one of two in flight; units that waited keep their order and are never split', async () => {
    const releases: (() => void)[] = [];
    const groups: string[][] = [];
    const write = async (rows: string[]) => {
      groups.push(rows);
      await new Promise<void>((resolve) => releases.push(resolve));
      return rows.map((row) => `ok:${row}`);
    };
    const submit = createGroupCommitter(write, { enabled: true, windowMs: 10_000, maxRows: 2, maxInFlight: 2 });
    const pending = [submit(['a', 'b']), submit(['c', 'd']), submit(['e']), submit(['f', 'g']), submit(['h'])];
    await new Promise((resolve) => setTimeout(resolve, 20));
    // Two full groups in flight; e, f g and h wait (no window timer of 10 s is what holds them).
    expect(groups).toEqual([
      ['a', 'b'],
      ['c', 'd'],
    ]);
    releases[1]?.();
    await new Promise((resolve) => setTimeout(resolve, 20));
    // One slot came free: the next group is written at once, bounded by maxRows, a unit never split.
    expect(groups).toEqual([
      ['a', 'b'],
      ['c', 'd'],
      ['e', 'f', 'g'],
    ]);
    releases[0]?.();
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(groups).toEqual([['a', 'b'], ['c', 'd'], ['e', 'f', 'g'], ['h']]);
    releases[2]?.();
    releases[3]?.();
    expect((await Promise.all(pending)).flat()).toEqual(['ok:a', 'ok:b', 'ok:c', 'ok:d', 'ok:e', 'ok:f', 'ok:g', 'ok:h']);
  });

  it('with maxInFlight 1, a failed group fails only its own members; the units that waited behind it are written next', async () => {
    let calls = 0;
    let failFirst: (error: Error) => void = () => {};
    const groups: string[][] = [];
    const write = async (rows: string[]) => {
      groups.push(rows);
      if (calls++ === 0) await new Promise<void>((_, reject) => (failFirst = reject));
      return rows.map((row) => `ok:${row}`);
    };
    const submit = createGroupCommitter(write, { enabled: true, windowMs: 0, maxRows: 100, maxInFlight: 1 });
    const first = submit(['a']);
    await new Promise((resolve) => setTimeout(resolve, 10));
    const second = [submit(['b']), submit(['c'])];
    await new Promise((resolve) => setTimeout(resolve, 10));
    failFirst(new Error('connection lost'));
    await expect(first).rejects.toThrow('connection lost');
    expect(await Promise.all(second)).toEqual([['ok:b'], ['ok:c']]);
    expect(groups).toEqual([['a'], ['b', 'c']]);
  });

  it('the window still applies when nothing is in flight', async () => {
    const r = recorder();
    const submit = createGroupCommitter(r.write, { enabled: true, windowMs: 30, maxRows: 100, maxInFlight: 1 });
    const first = submit(['a']);
    await new Promise((resolve) => setTimeout(resolve, 5));
    const second = submit(['b']);
    expect(r.groups).toEqual([]);
    await Promise.all([first, second]);
    expect(r.groups).toEqual([['a', 'b']]);
  });

  it('off: every request is written on its own, at once (the in-flight bound is for groups only)', async () => {
    const r = recorder();
    r.hold();
    const submit = createGroupCommitter(r.write, { enabled: false, windowMs: 10, maxRows: 100, maxInFlight: 1 });
    const pending = Promise.all([submit(['a']), submit(['b', 'c'])]);
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(r.groups).toEqual([['a'], ['b', 'c']]);
    r.release();
    await pending;
  });
});
