import { describe, expect, it } from 'vitest';
import { until, waitFor } from './until.js';

describe('waiting for a state', () => {
  it('returns the value once it holds', async () => {
    let n = 0;
    expect(await until('n to reach 3', () => ++n, (v) => v >= 3)).toBe(3);
  });

  it('fails naming what was awaited and what was last seen', async () => {
    await expect(until('the count', () => ({ count: 1 }), (v) => v.count === 2, 0.05)).rejects.toThrow('waited 0.05 s for the count; last seen {"count":1}');
  });

  it('quotes a plain condition when not told what it waits for', async () => {
    const got: string[] = [];
    await expect(waitFor(() => got.length === 2, undefined, 0.05)).rejects.toThrow(/waited 0.05 s for `got.length === 2`; last seen false/);
  });
});
