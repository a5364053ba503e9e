import { describe, expect, it } from 'vitest';
import { requireBuilt } from '../../test/support/platform.js';
import { formatTcb, measureTcb } from './tcb.js';

describe('ringside tcb', () => {
  it('counts hv, dom0 and hw (the emulated hardware decides every DMA) as trusted, and nothing else', () => {
    requireBuilt();
    const r = measureTcb();
    const trusted = r.parts.filter((p) => p.trusted).map((p) => p.domain).sort();
    expect(trusted).toEqual(['dom0', 'hv', 'hw']);
    expect(r.parts.find((p) => p.domain === 'hw')?.hardware).toBe(true);
    expect(r.trustedLines).toBeGreaterThan(r.nativeLines);
    expect(r.trustedLines).toBeLessThan(r.totalLines);
    const hv = r.parts.find((p) => p.domain === 'hv')!;
    expect(hv.homeLines).toBeGreaterThan(0);
    expect(hv.homeLines).toBeLessThan(hv.ownLines);
    expect(formatTcb(r)).toMatch(/TCB \(hv \+ dom0 \+ hw \+ native, distinct lines\): \d+ of \d+/);
  });
});
