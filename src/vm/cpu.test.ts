// Against the real QEMU's model table under TCG (a short-lived QEMU with no machine), and the
// levelling rule against hand-made hosts.
import { beforeAll, describe, expect, it } from 'vitest';
import { baselineModel, checkMask, missingFeatures, probeHostCpu, type HostCpu } from './cpu.js';

describe("what this host's QEMU offers under TCG", () => {
  let h: HostCpu;
  beforeAll(async () => {
    h = await probeHostCpu('tcg');
  }, 30_000);

  it('offers the default model and Westmere; names what Skylake-Client needs that TCG lacks', () => {
    expect(missingFeatures(h, [], 'qemu64').missing).toEqual([]);
    expect(missingFeatures(h, [], 'Westmere').missing).toEqual([]);
    const sky = missingFeatures(h, [], 'Skylake-Client');
    expect(sky.missing).toContain('x2apic');
    expect(sky.why).toMatch(/Skylake-Client needs features this host lacks: .*x2apic.*\(not offered under TCG here\)/);
    expect(h.models.has('host')).toBe(false);
  });

  it('a cpu_mask takes a feature away from the models that have it, and only from those', () => {
    expect(h.models.get('Westmere')?.features.has('aes')).toBe(true);
    expect(missingFeatures(h, ['aes'], 'Westmere')).toEqual({ missing: ['aes'], why: 'CPU model Westmere needs features this host lacks: aes (masked by host.cfg cpu_mask)' });
    expect(missingFeatures(h, ['aes'], 'qemu64').missing).toEqual([]);
  });

  it('refuses a mask naming a feature QEMU does not know, and a model it does not have', () => {
    expect(() => checkMask(h, ['aes', 'aes-ni'])).toThrow(/cpu_mask names 'aes-ni', which QEMU does not know/);
    expect(() => checkMask(h, ['aes', 'avx512f'])).not.toThrow();
    expect(missingFeatures(h, [], 'Pentium9').why).toMatch(/no migration-safe CPU model 'Pentium9'/);
  });

  it('baseline: the most capable model every host offers', () => {
    const alone = baselineModel(h, [], []);
    expect(missingFeatures(h, [], alone).missing).toEqual([]);
    // a second host without AES-NI: the pick is one without aes, and no richer than the first
    const noAes = Object.fromEntries([...h.models.keys()].map((m) => [m, missingFeatures(h, ['aes'], m).missing]));
    const both = baselineModel(h, [], [noAes]);
    expect(h.models.get(both)?.features.has('aes')).toBe(false);
    expect(h.models.get(both)?.features.size).toBeLessThanOrEqual(h.models.get(alone)?.features.size ?? 0);
  });
});

describe('baseline levelling', () => {
  const host: HostCpu = {
    accel: 'tcg',
    known: new Set(['a', 'b', 'c']),
    models: new Map([
      ['small', { unavailable: [], features: new Set(['a']) }],
      ['mid', { unavailable: [], features: new Set(['a', 'b']) }],
      ['mid2', { unavailable: [], features: new Set(['a', 'c']) }],
      ['big', { unavailable: ['c'], features: new Set(['a', 'b', 'c']) }],
    ]),
  };
  it('skips models this host lacks, breaks ties by name, and treats a model a peer did not answer for as missing', () => {
    expect(baselineModel(host, [], [])).toBe('mid');
    expect(baselineModel(host, ['b'], [])).toBe('mid2');
    expect(baselineModel(host, [], [{ small: [], mid: ['b'], mid2: [] }])).toBe('mid2');
    expect(baselineModel(host, [], [{ small: [] }])).toBe('small');
    expect(() => baselineModel(host, [], [{}])).toThrow(/no CPU model is offered by every host/);
  });
});
