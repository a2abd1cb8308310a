import { describe, expect, it } from '@jest/globals';
import { uuidv7 } from '../../src/ids.js';

const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe('uuidv7', () => {
  it('is a version 7, RFC 9562 variant uuid carrying the given millisecond', () => {
    const ms = Date.UTC(2026, 11, 1, 4, 30);
    const id = uuidv7(ms + 10_000_000); // ahead of every id made so far in this process
    expect(id).toMatch(UUID_V7);
    expect(parseInt(id.replace(/-/g, '').slice(0, 12), 16)).toBe(ms + 10_000_000);
  });

  it('increases within one millisecond and never repeats across many random-pool refills', () => {
    // More ids than the 12-bit counter holds in one millisecond: the clock part moves on by one.
    const ms = Date.now() + 20_000_000;
    const ids = Array.from({ length: 5000 }, () => uuidv7(ms));
    expect([...ids].sort()).toEqual(ids);
    expect(new Set(ids).size).toBe(ids.length);
    // The random tail differs from one id to the next (not a pool handed out twice).
    const tails = new Set(ids.map((id) => id.slice(19)));
    expect(tails.size).toBe(ids.length);
    for (const id of ids) expect(id).toMatch(UUID_V7);
  });
});
