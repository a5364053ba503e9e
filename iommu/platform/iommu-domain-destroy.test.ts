// Destroying an IOMMU domain gives its second-level table frames back, after nothing can reach
// them any more: a driver-domain restart loop must not exhaust hv's table area, and a device that
// still aimed at the destroyed domain must fault rather than walk freed (reused) tables.
import { describe, expect, it } from 'vitest';
import { devfn, sourceId } from '../../src/config/bdf.js';
import { HvTableMemory } from '../../domains/hv/iommu-memory.js';
import { TT_UNTRANSLATED } from '../../src/abi/vtd-entries.js';
import { BumpFrames, SparseMemory } from '../../src/memory/physmem.js';
import { VtdUnit } from '../../src/hw/vtd/unit.js';
import { bdf, hostConfig, hostDev } from './host-builder.js';
import { IommuDomains } from './iommu-domains.js';
import { PciPlatform } from './platform.js';

const RW = { read: true, write: true };
const FRAMES = 64;

function rig() {
  const mem = new SparseMemory(2 ** 34);
  const frames = new BumpFrames(mem, 0x10_0000, 0x10_0000 + FRAMES * 4096);
  const unit = new VtdUnit(mem);
  const iommu = new IommuDomains(unit, mem, frames);
  const p = new PciPlatform(hostConfig([hostDev('00:01.0', 'root-port'), hostDev('01:00.0', 'nvme', { parent: '00:01.0' })]), { iommu });
  unit.onFault = (f) => p.noteFault(f);
  return { mem, frames, unit, iommu, p, sid: sourceId(bdf('01:00.0')) };
}

describe('IOMMU domain destroy frees its tables', () => {
  it(`create / map / destroy 300 times inside a ${FRAMES}-frame table area`, () => {
    const { frames, unit, iommu, p, sid } = rig();
    p.assignableAdd('01:00.0');
    const base = frames.inUse;
    for (let k = 0; k < 300; k++) {
      const domid = 10 + k;
      p.assign([bdf('01:00.0')], domid);
      // 8 mappings 512 GiB apart: a level-3, level-2 and level-1 table each, 25 frames a domain
      for (let i = 0; i < 8; i++) iommu.map(domid, i * 2 ** 39, 0x4000_0000 + i * 4096, RW);
      expect(unit.dmaWrite(sid, 7 * 2 ** 39, new Uint8Array(4))).toEqual({ ok: true });
      expect(frames.inUse).toBe(base + 25);
      p.releaseDomain(domid);
      expect(iommu.destroy(domid)).toBe(25);
      expect(frames.inUse).toBe(base);
    }
    // 300 * 25 frames would not have fit: they were reused, and domain ids with them
    expect(iommu.domainCount).toBe(1);
  });

  it('a device DMA after its domain was destroyed faults, also once the frames serve another domain', () => {
    const { mem, unit, iommu, p, sid } = rig();
    p.assignableAdd('01:00.0');
    p.assign([bdf('01:00.0')], 3);
    iommu.map(3, 0x1000, 0x4000_0000, RW);
    expect(unit.dmaWrite(sid, 0x1000, Uint8Array.of(1, 2, 3, 4))).toEqual({ ok: true }); // IOTLB warm
    p.releaseDomain(3);
    iommu.destroy(3);
    expect(unit.dmaWrite(sid, 0x1000, new Uint8Array(4))).toMatchObject({ ok: false });
    // the freed frames now hold domain 4's tables, mapping the same iova elsewhere
    iommu.map(4, 0x1000, 0x5000_0000, RW);
    const victim = new Uint8Array(4);
    expect(unit.dmaWrite(sid, 0x1000, Uint8Array.of(9, 9, 9, 9))).toMatchObject({ ok: false });
    mem.read(0x5000_0000, victim);
    expect([...victim]).toEqual([0, 0, 0, 0]);
  });

  it('a stray context entry still naming the domain is cleared and invalidated before the frames go', () => {
    const { mem, unit, iommu } = rig();
    const b = bdf('01:00.0');
    iommu.map(5, 0x2000, 0x4000_0000, RW);
    const did = iommu.didOf(5) as number;
    // programmed behind the bookkeeping's back: destroy must still find it
    iommu.root.setContext(b.bus, devfn(b), { present: true, fpd: false, tt: TT_UNTRANSLATED, slptptr: rootOf(iommu, 5), aw: 2, did });
    iommu.driver.flushContextGlobal();
    expect(unit.dmaRead(sourceId(b), 0x2000, new Uint8Array(4))).toEqual({ ok: true });
    iommu.destroy(5);
    expect(iommu.root.context(b.bus, devfn(b))).toBeNull();
    iommu.map(6, 0x2000, 0x5000_0000, RW); // reuses the freed frames
    mem.write(0x5000_0000, Uint8Array.of(7, 7, 7, 7));
    expect(unit.dmaRead(sourceId(b), 0x2000, new Uint8Array(4))).toMatchObject({ ok: false, reason: 2 });
  });

  it("hv's table area: 40 restarts of a domain with 1,500 table frames each (more than the area holds)", () => {
    const mem = new HvTableMemory();
    try {
      const unit = new VtdUnit(mem, { addressWidth: 48 });
      const iommu = new IommuDomains(unit, mem, mem.tables);
      const b = bdf('01:00.0');
      for (let k = 0; k < 40; k++) {
        for (let i = 0; i < 500; i++) iommu.map(100, i * 2 ** 39, 0x1000 * (i + 1), RW);
        expect(iommu.destroy(100)).toBe(1501);
      }
      const t = mem.tableFrames;
      expect(t.carved).toBeLessThan(1600);
      expect(t.carved - t.free).toBeLessThan(10); // root, queue, status, quarantine, a context table
      // a freed frame is zeroed at once: a stale walk through it reads not-present, not old PTEs
      const last = 0x7ff0 * 2 ** 24 + (t.carved - 1) * 4096;
      expect([...(mem.peek(last, 4096) as Uint8Array)].every((x) => x === 0)).toBe(true);
      iommu.map(100, 0x2000, mem.allocFirmware(), RW);
      const top = rootOf(iommu, 100);
      iommu.attach(b, 100);
      expect(unit.dmaRead(sourceId(b), 0x2000, new Uint8Array(4))).toEqual({ ok: true });
      iommu.attach(b, 'quarantine');
      iommu.destroy(100);
      // the old top-level table, pointed at behind the driver's back, now holds no entries
      iommu.root.setContext(b.bus, devfn(b), { present: true, fpd: false, tt: TT_UNTRANSLATED, slptptr: top, aw: 2, did: 99 });
      iommu.driver.flushContextGlobal();
      expect(unit.dmaRead(sourceId(b), 0x2000, new Uint8Array(4))).toMatchObject({ ok: false, reason: 6 });
    } finally {
      mem.close();
    }
  });
});

/** The SLPTPTR of `owner`'s tables, as attach would write it. */
function rootOf(iommu: IommuDomains, owner: number): number {
  // private field access for the test: the table root of the domain
  return (iommu as unknown as { domains: Map<number, { table: { root: number } }> }).domains.get(owner)?.table.root as number;
}
