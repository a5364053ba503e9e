import { describe, expect, it } from 'vitest';
import { contextCacheDescriptor, iotlbDescriptor, waitDescriptor } from '../../abi/vtd-queue.js';
import { SIZE_2M, SIZE_4K } from '../../../iommu/vtd/pagetable.js';
import { readU32, writeU64 } from '../../memory/physmem.js';
import { FSTS_IQE, ICS_IWC, REG } from '../../abi/vtd-registers.js';
import { makeTestbed, sidOf } from './testbed.js';
import type { Testbed } from './testbed.js';

const RW = { read: true, write: true };
const A = sidOf(3, 0, 0);
const B = sidOf(4, 0, 0);

function addr(tb: Testbed, sid: number, iova: number, access: 'r' | 'w' = 'r'): number | string {
  const r = tb.unit.translate(sid, iova, access);
  return r.ok ? r.addr : `fault ${r.reason}`;
}

for (const queued of [false, true]) {
  describe(`IOTLB and context cache, ${queued ? 'queued' : 'register-based'} invalidation`, () => {
    it('keeps a stale translation after a PTE change until the page is invalidated', () => {
      const tb = makeTestbed({ queued });
      const t = tb.attach(3, 0, 1);
      t.map(0x5000, 0x4000_0000, SIZE_4K, RW);
      expect(addr(tb, A, 0x5010)).toBe(0x4000_0010);
      t.unmap(0x5000);
      t.map(0x5000, 0x4000_9000, SIZE_4K, RW);
      expect(addr(tb, A, 0x5010)).toBe(0x4000_0010); // stale, as on hardware
      tb.drv.flushIotlbPages(1, 0x5000);
      expect(addr(tb, A, 0x5010)).toBe(0x4000_9010);
    });

    it('keeps an unmapped page reachable until invalidated, then faults', () => {
      const tb = makeTestbed({ queued });
      const t = tb.attach(3, 0, 1);
      t.map(0x5000, 0x4000_0000, SIZE_4K, RW);
      expect(addr(tb, A, 0x5000, 'w')).toBe(0x4000_0000);
      t.unmap(0x5000);
      expect(addr(tb, A, 0x5000, 'w')).toBe(0x4000_0000);
      tb.drv.flushIotlbPages(1, 0x5000);
      expect(addr(tb, A, 0x5000, 'w')).toBe('fault 5');
    });

    it('global, domain-selective and page-selective (with AM) scopes drop exactly their entries', () => {
      const tb = makeTestbed({ queued });
      const ta = tb.attach(3, 0, 1);
      const tbb = tb.attach(4, 0, 2);
      for (let i = 0; i < 8; i++) {
        ta.map(0x10_0000 + i * 0x1000, 0x4000_0000 + i * 0x1000, SIZE_4K, RW);
        tbb.map(0x10_0000 + i * 0x1000, 0x5000_0000 + i * 0x1000, SIZE_4K, RW);
      }
      ta.map(SIZE_2M * 10, SIZE_2M * 700, SIZE_2M, RW);
      const warm = (): void => {
        for (let i = 0; i < 8; i++) {
          addr(tb, A, 0x10_0000 + i * 0x1000);
          addr(tb, B, 0x10_0000 + i * 0x1000);
        }
        addr(tb, A, SIZE_2M * 10 + 0x1000);
      };
      warm();
      expect(tb.unit.iotlb.size).toBe(17);

      // AM=2: the aligned 4 pages 0x104000..0x107fff of domain 1 only
      tb.drv.flushIotlbPages(1, 0x10_5000, 2);
      expect(tb.unit.iotlb.size).toBe(13);
      const walks = tb.unit.stats.walks;
      for (let i = 0; i < 8; i++) addr(tb, A, 0x10_0000 + i * 0x1000);
      expect(tb.unit.stats.walks - walks).toBe(4);

      // a page-selective invalidation inside a superpage drops the superpage entry
      tb.drv.flushIotlbPages(1, SIZE_2M * 10 + 0x7000);
      expect(tb.unit.iotlb.size).toBe(16);
      warm();

      tb.drv.flushIotlbDomain(2);
      expect(tb.unit.iotlb.size).toBe(9);
      warm();
      tb.drv.flushIotlbGlobal();
      expect(tb.unit.iotlb.size).toBe(0);
    });

    it('keeps a stale context entry until the context cache is invalidated', () => {
      const tb = makeTestbed({ queued });
      const t1 = tb.attach(3, 0, 1);
      t1.map(0x1000, 0x4000_0000, SIZE_4K, RW);
      expect(addr(tb, A, 0x1000)).toBe(0x4000_0000);
      const t2 = tb.attach(3, 0, 7); // move the device to another domain's tables
      t2.map(0x1000, 0x6000_0000, SIZE_4K, RW);
      tb.drv.flushIotlbGlobal();
      expect(addr(tb, A, 0x1000)).toBe(0x4000_0000); // context cache still says domain 1
      tb.drv.flushContextDevice(A);
      tb.drv.flushIotlbDomain(1);
      expect(addr(tb, A, 0x1000)).toBe(0x6000_0000);
    });

    it('context-cache scopes: domain-selective and device-selective with a function mask', () => {
      const tb = makeTestbed({ queued });
      const fns = [0, 1, 2, 5].map((fn) => sidOf(3, 2, fn));
      for (const sid of fns) tb.attach(3, sid & 0xff, 1).map(0x1000, 0x4000_0000, SIZE_4K, RW);
      tb.attach(4, 0, 2).map(0x1000, 0x4000_0000, SIZE_4K, RW);
      const warm = (): void => {
        tb.drv.flushIotlbGlobal(); // IOTLB hits never consult the context cache
        for (const sid of [...fns, B]) addr(tb, sid, 0x1000);
      };
      warm();
      expect(tb.unit.contextCache.size).toBe(5);
      tb.drv.flushContextDevice(sidOf(3, 2, 0), 1, 1); // FM=1 ignores function bit 2: fns 0 and 4
      expect(tb.unit.contextCache.size).toBe(4);
      tb.drv.flushContextDevice(sidOf(3, 2, 0), 1, 3); // FM=3: all eight functions
      expect(tb.unit.contextCache.size).toBe(1);
      warm();
      tb.drv.flushContextDomain(2);
      expect(tb.unit.contextCache.size).toBe(4);
      tb.drv.flushContextGlobal();
      expect(tb.unit.contextCache.size).toBe(0);
    });
  });
}

describe('register-based invalidation registers', () => {
  it('clears ICC/IVT on completion and reports the actual granularity', () => {
    const tb = makeTestbed();
    tb.drv.flushContextDomain(5);
    expect((tb.unit.mmioRead(REG.CCMD, 8) >> 59n) & 3n).toBe(2n);
    tb.drv.flushIotlbPages(5, 0x1000, 30); // AM above MAMV: the unit widens it to the domain
    expect((tb.unit.mmioRead(REG.IOTLB, 8) >> 57n) & 3n).toBe(2n);
    expect(tb.unit.mmioRead(REG.IOTLB, 8) >> 63n).toBe(0n);
  });

  it('ignores register-based commands while queued invalidation is on', () => {
    const tb = makeTestbed({ queued: true });
    const t = tb.attach(3, 0, 1);
    t.map(0x1000, 0x4000_0000, SIZE_4K, RW);
    addr(tb, A, 0x1000);
    tb.unit.mmioWrite(REG.IOTLB, 8, (1n << 63n) | (1n << 60n));
    expect(tb.unit.iotlb.size).toBe(1);
    expect(tb.logs.some((l) => l.includes('queued invalidation is enabled'))).toBe(true);
  });
});

describe('queued invalidation', () => {
  function queue(tb: Testbed, descs: (readonly [bigint, bigint])[], from = 0): void {
    const iqa = Number(tb.unit.mmioRead(REG.IQA, 8) & ~0xfffn);
    descs.forEach((d, i) => {
      writeU64(tb.mem, iqa + (from + i) * 16, d[0]);
      writeU64(tb.mem, iqa + (from + i) * 16 + 8, d[1]);
    });
    tb.unit.mmioWrite(REG.IQT, 8, BigInt(from + descs.length) << 4n);
  }

  it('processes descriptors head to tail and writes the wait status', () => {
    const tb = makeTestbed({ queued: true });
    const t = tb.attach(3, 0, 1);
    t.map(0x1000, 0x4000_0000, SIZE_4K, RW);
    addr(tb, A, 0x1000);
    const status = tb.frames.alloc();
    queue(tb, [iotlbDescriptor(1), contextCacheDescriptor(1), waitDescriptor({ status: { addr: status + 8, data: 0xc0ffee } })]);
    expect(tb.unit.iotlb.size).toBe(0);
    expect(tb.unit.contextCache.size).toBe(0);
    expect(readU32(tb.mem, status + 8)).toBe(0xc0ffee);
    expect(tb.unit.mmioRead(REG.IQH, 8)).toBe(3n << 4n);
  });

  it('a wait descriptor with IF sets ICS.IWC and raises the completion event once', () => {
    const tb = makeTestbed({ queued: true });
    tb.unit.mmioWrite(REG.IEDATA, 4, 0x55);
    tb.unit.mmioWrite(REG.IEADDR, 4, 0xfee0_1000);
    tb.unit.mmioWrite(REG.IECTL, 4, 0);
    queue(tb, [waitDescriptor({ interrupt: true }), waitDescriptor({ interrupt: true })]);
    expect(Number(tb.unit.mmioRead(REG.ICS, 4)) & ICS_IWC).toBe(ICS_IWC);
    expect(tb.interrupts).toEqual([{ source: 'invalidation-completion', addr: 0xfee0_1000, data: 0x55 }]);
    tb.unit.mmioWrite(REG.ICS, 4, ICS_IWC);
    expect(Number(tb.unit.mmioRead(REG.ICS, 4)) & ICS_IWC).toBe(0);
    queue(tb, [waitDescriptor({ interrupt: true })], 2);
    expect(tb.interrupts).toHaveLength(2);
  });

  it('accepts device-TLB and interrupt-entry-cache descriptors', () => {
    const tb = makeTestbed({ queued: true });
    queue(tb, [
      [3n, 0n],
      [4n | (1n << 4n), 0n],
    ]);
    expect(Number(tb.unit.mmioRead(REG.FSTS, 4)) & FSTS_IQE).toBe(0);
    expect(tb.unit.mmioRead(REG.IQH, 8)).toBe(2n << 4n);
  });

  it('stops at a bad descriptor with FSTS.IQE, IQH on it, and resumes once IQE is cleared', () => {
    for (const bad of [
      [7n, 0n], // type 7 is scalable-mode only
      [1n, 0n], // context-cache with granularity 0
      [2n | (3n << 4n), 40n], // page-selective with AM above MAMV
      [5n | (1n << 12n), 0n], // wait with reserved bits
      [1n | (1n << 4n), 1n], // reserved qword 1
    ] as const) {
      const tb = makeTestbed({ queued: true });
      const t = tb.attach(3, 0, 1);
      t.map(0x1000, 0x4000_0000, SIZE_4K, RW);
      addr(tb, A, 0x1000);
      const status = tb.frames.alloc();
      queue(tb, [waitDescriptor({ status: { addr: status, data: 1 } }), bad, iotlbDescriptor(1), waitDescriptor({ status: { addr: status, data: 2 } })]);
      expect(Number(tb.unit.mmioRead(REG.FSTS, 4)) & FSTS_IQE).toBe(FSTS_IQE);
      expect(tb.unit.mmioRead(REG.IQH, 8)).toBe(1n << 4n);
      expect(readU32(tb.mem, status)).toBe(1);
      expect(tb.unit.iotlb.size).toBe(1); // nothing after the bad descriptor ran
      // software replaces the bad descriptor (as Linux does with a copy of the wait) and clears IQE
      const iqa = Number(tb.unit.mmioRead(REG.IQA, 8) & ~0xfffn);
      const wd = waitDescriptor({});
      writeU64(tb.mem, iqa + 16, wd[0]);
      writeU64(tb.mem, iqa + 24, wd[1]);
      tb.unit.mmioWrite(REG.FSTS, 4, FSTS_IQE);
      expect(readU32(tb.mem, status)).toBe(2);
      expect(tb.unit.iotlb.size).toBe(0);
      expect(tb.unit.mmioRead(REG.IQH, 8)).toBe(4n << 4n);
    }
  });

  it('treats a tail beyond the queue as an error', () => {
    const tb = makeTestbed({ queued: true });
    tb.unit.mmioWrite(REG.IQT, 8, 300n << 4n); // QS=0: 256 entries
    expect(Number(tb.unit.mmioRead(REG.FSTS, 4)) & FSTS_IQE).toBe(FSTS_IQE);
  });
});

describe('caching mode', () => {
  it('CM=0: a not-present to present change needs no invalidation', () => {
    const tb = makeTestbed({ cachingMode: false });
    expect(addr(tb, A, 0x1000)).toBe('fault 1');
    const t = tb.attach(3, 0, 1);
    expect(addr(tb, A, 0x1000)).toBe('fault 6');
    t.map(0x1000, 0x4000_0000, SIZE_4K, RW);
    expect(addr(tb, A, 0x1000)).toBe(0x4000_0000);
  });

  it('CM=1: not-present context and PTEs are cached until software invalidates', () => {
    const tb = makeTestbed({ cachingMode: true, queued: true });
    expect(addr(tb, A, 0x1000)).toBe('fault 1');
    const t = tb.attach(3, 0, 1);
    expect(addr(tb, A, 0x1000)).toBe('fault 1'); // cached not-present
    tb.drv.flushContextDevice(A);
    expect(addr(tb, A, 0x1000)).toBe('fault 6');
    t.map(0x1000, 0x4000_0000, SIZE_4K, RW);
    expect(addr(tb, A, 0x1000)).toBe('fault 6'); // cached not-present PTE
    expect(addr(tb, A, 0x1000, 'w')).toBe('fault 5');
    tb.drv.flushIotlbPages(1, 0x1000);
    expect(addr(tb, A, 0x1000)).toBe(0x4000_0000);
    expect((tb.unit.mmioRead(REG.CAP, 8) >> 7n) & 1n).toBe(1n);
  });

  it('SRTP and toggling TE reset every cache', () => {
    const tb = makeTestbed();
    const t = tb.attach(3, 0, 1);
    t.map(0x1000, 0x4000_0000, SIZE_4K, RW);
    addr(tb, A, 0x1000);
    expect(tb.unit.iotlb.size + tb.unit.contextCache.size).toBe(2);
    tb.drv.setRootTable(tb.root.pa);
    expect(tb.unit.iotlb.size + tb.unit.contextCache.size).toBe(0);
    addr(tb, A, 0x1000);
    tb.drv.disableTranslation();
    tb.drv.enableTranslation();
    expect(tb.unit.iotlb.size + tb.unit.contextCache.size).toBe(0);
  });
});
