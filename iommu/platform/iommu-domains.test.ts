import { describe, expect, it } from 'vitest';
import { sourceId } from '../../src/config/bdf.js';
import { SIZE_4K } from '../vtd/pagetable.js';
import { BumpFrames, SparseMemory } from '../../src/memory/physmem.js';
import { VtdUnit } from '../../src/hw/vtd/unit.js';
import { bdf, hostConfig, hostDev } from './host-builder.js';
import { IommuDomains } from './iommu-domains.js';
import { PciPlatform, type AttributedFault } from './platform.js';

function rig(cachingMode = false) {
  const mem = new SparseMemory(2 ** 34);
  const frames = new BumpFrames(mem, 0x10_0000);
  const unit = new VtdUnit(mem, { cachingMode });
  const iommu = new IommuDomains(unit, mem, frames);
  const p = new PciPlatform(
    hostConfig([
      hostDev('00:01.0', 'root-port'),
      hostDev('01:00.0', 'nic', { parent: '00:01.0' }),
      hostDev('00:02.0', 'root-port'),
      hostDev('02:00.0', 'nvme', { parent: '00:02.0' }),
    ]),
    { iommu },
  );
  // what hv's fault handler would log, in order
  const faults: AttributedFault[] = [];
  unit.onFault = (f) => {
    const a = p.noteFault(f);
    if (a !== undefined) faults.push(a);
  };
  const nic = sourceId(bdf('01:00.0'));
  const nvme = sourceId(bdf('02:00.0'));
  return { mem, unit, iommu, p, nic, nvme, faults };
}

const RW = { read: true, write: true };

describe('platform ownership reflected in the IOMMU', () => {
  it('a device nobody made assignable faults with "context not present"; quarantine faults on every page', () => {
    const { unit, p, nic, faults } = rig();
    expect(unit.dmaWrite(nic, 0x1000, new Uint8Array(4))).toMatchObject({ ok: false, reason: 2 });
    p.assignableAdd('01:00.0');
    expect(unit.dmaWrite(nic, 0x1000, new Uint8Array(4))).toMatchObject({ ok: false, reason: 5 });
    expect(unit.dmaRead(nic, 0x7fff_0000, new Uint8Array(4))).toMatchObject({ ok: false, reason: 6 });
    expect(faults.map((f) => [f.bdf, f.owner, f.reason])).toEqual([
      ['0000:01:00.0', 'host', 2],
      ['0000:01:00.0', 'quarantine', 5],
      ['0000:01:00.0', 'quarantine', 6],
    ]);
    expect(p.list().find((d) => d.bdf === '0000:01:00.0')?.faults).toBe(3);
  });

  it('an assigned device reaches exactly what its domain mapped, and loses it on release', () => {
    const { mem, unit, iommu, p, nic, nvme, faults } = rig();
    p.assign([{ bdf: bdf('01:00.0'), seize: true }], 3);
    p.assign([{ bdf: bdf('02:00.0'), seize: true }], 4);
    iommu.map(3, 0x10_0000, 0x4000_0000, RW);
    iommu.map(4, 0x10_0000, 0x5000_0000, RW);
    expect(unit.dmaWrite(nic, 0x10_0010, new Uint8Array([1, 2, 3]))).toEqual({ ok: true });
    expect(unit.dmaWrite(nvme, 0x10_0010, new Uint8Array([7]))).toEqual({ ok: true });
    const b = new Uint8Array(3);
    mem.read(0x4000_0010, b);
    expect([...b]).toEqual([1, 2, 3]);
    mem.read(0x5000_0010, b);
    expect(b[0]).toBe(7);
    // the NIC cannot reach the NVMe domain's page at any IOVA it was not given
    expect(unit.dmaRead(nic, 0x5000_0000, new Uint8Array(4))).toMatchObject({ ok: false, reason: 6 });
    p.release('01:00.0');
    expect(unit.dmaWrite(nic, 0x10_0010, new Uint8Array([9]))).toMatchObject({ ok: false, reason: 5 });
    mem.read(0x4000_0010, b);
    expect(b[0]).toBe(1);
    expect(faults.map((f) => f.owner)).toEqual(['domain 3', 'quarantine']);
  });

  it('unmap (a device_map grant going away) removes the translation at once, no stale IOTLB entry', () => {
    for (const cm of [false, true]) {
      const { unit, iommu, p, nic } = rig(cm);
      p.assign([{ bdf: bdf('01:00.0'), seize: true }], 3);
      iommu.map(3, 0x20_0000, 0x4000_1000, { read: true, write: false });
      expect(unit.dmaRead(nic, 0x20_0000, new Uint8Array(8))).toEqual({ ok: true });
      expect(unit.dmaWrite(nic, 0x20_0000, new Uint8Array(8))).toMatchObject({ ok: false, reason: 5 }); // read-only grant
      expect(iommu.lookup(3, 0x20_0008)).toMatchObject({ pa: 0x4000_1008, size: SIZE_4K, write: false });
      iommu.unmap(3, 0x20_0000);
      expect(unit.dmaRead(nic, 0x20_0000, new Uint8Array(8))).toMatchObject({ ok: false, reason: 6 });
    }
  });

  it('moving a device between domains flushes what the old domain left cached', () => {
    const { unit, iommu, p, nic } = rig();
    p.assign([{ bdf: bdf('01:00.0'), seize: true }], 3);
    iommu.map(3, 0x1000, 0x4000_0000, RW);
    expect(unit.dmaRead(nic, 0x1000, new Uint8Array(4))).toEqual({ ok: true }); // cached for domain 3
    p.release('01:00.0');
    p.assign([bdf('01:00.0')], 8);
    iommu.map(8, 0x1000, 0x6000_0000, RW);
    expect(unit.translate(nic, 0x1000, 'r')).toEqual({ ok: true, addr: 0x6000_0000 });
    expect(iommu.ownerOfDid(unit.iotlb.did[unit.iotlb.valid.indexOf(1)])).toBe(8);
    expect(() => iommu.destroy(8)).toThrow(/still has 0000:01:00.0 attached/);
    p.releaseDomain(8);
    iommu.destroy(8);
  });
});
