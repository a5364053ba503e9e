import { describe, expect, it } from 'vitest';
import { formatPermList, parsePerm, parsePermList } from './perms.js';

describe('permission strings', () => {
  it('parses and formats n/r/w/b entries', () => {
    expect(parsePermList('n0,r5')).toEqual([
      { id: 0, perm: 'n' },
      { id: 5, perm: 'r' },
    ]);
    expect(parsePermList('b3 w4')).toEqual([
      { id: 3, perm: 'b' },
      { id: 4, perm: 'w' },
    ]);
    expect(formatPermList(parsePermList('n0,r5,b65535'))).toBe('n0,r5,b65535');
  });

  it('rejects malformed entries', () => {
    for (const bad of ['', 'x0', 'r', 'r-1', 'r65536', 'R5', 'r5x', ' r5', 'r123456']) expect(parsePerm(bad), bad).toBeNull();
    expect(() => parsePermList('n0,q1')).toThrow(/q1/);
    expect(() => parsePermList(' , ')).toThrow();
  });
});
