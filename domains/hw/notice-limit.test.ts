import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { NoticeLimiter } from './notice-limit.js';

describe('fault notices per source id', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('lets max a window through per source, counts the rest, and reports their number once the window closes', () => {
    const reports: [number, number][] = [];
    const l = new NoticeLimiter(3, 1000, (sid, n) => reports.push([sid, n]));
    const sent = (sid: number, k: number) => Array.from({ length: k }, () => l.allow(sid)).filter(Boolean).length;
    expect(sent(0x100, 500)).toBe(3);
    // another source is not held back by the first one's flood
    expect(sent(0x200, 2)).toBe(2);
    expect(l.held).toBe(497);
    expect(reports).toEqual([]);
    vi.advanceTimersByTime(1000);
    expect(reports).toEqual([[0x100, 497]]);
    // a fresh window for the flooding source
    expect(sent(0x100, 5)).toBe(3);
    vi.advanceTimersByTime(1000);
    expect(reports).toEqual([[0x100, 497], [0x100, 2]]);
    // a quiet source's window simply ends: nothing to report
    vi.advanceTimersByTime(5000);
    expect(sent(0x200, 3)).toBe(3);
    expect(reports).toHaveLength(2);
  });
});
