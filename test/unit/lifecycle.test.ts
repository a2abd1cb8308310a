// Shutdown as a LIFO list of releasers: every step runs, in reverse order of registration, even
// when an earlier one throws; the first error is rethrown once all have run.
import { describe, expect, it } from '@jest/globals';
import { Releasers } from '../../src/lifecycle.js';

describe('releasers', () => {
  it('run in reverse order of registration', async () => {
    const ran: string[] = [];
    const releasers = new Releasers();
    releasers.add(() => void ran.push('pool'));
    releasers.add(async () => void ran.push('producer'));
    releasers.add(() => void ran.push('intake'));
    await releasers.releaseAll();
    expect(ran).toEqual(['intake', 'producer', 'pool']);
  });

  it('guarantee 7: a releaser that throws does not keep the later ones (the pool) from running; the first error is rethrown', async () => {
    const ran: string[] = [];
    const releasers = new Releasers();
    releasers.add(() => void ran.push('pool'));
    releasers.add(() => {
      ran.push('producer');
      throw new Error('flush failed');
    });
    releasers.add(async () => {
      ran.push('consumer');
      await Promise.resolve();
      throw new Error('commit failed');
    });
    releasers.add(() => void ran.push('intake'));
    await expect(releasers.releaseAll()).rejects.toThrow('commit failed');
    expect(ran).toEqual(['intake', 'consumer', 'producer', 'pool']);
  });

  it('run once: a second releaseAll finds nothing left to release', async () => {
    let runs = 0;
    const releasers = new Releasers();
    releasers.add(() => void runs++);
    await releasers.releaseAll();
    await releasers.releaseAll();
    expect(runs).toBe(1);
  });
});
