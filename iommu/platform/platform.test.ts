import { describe, expect, it } from 'vitest';
import { formatCheckReport } from '../check-report.js';
import { CFG, CMD_BUS_MASTER } from '../../src/abi/pci.js';
import { bdf, hostConfig, hostDev } from './host-builder.js';
import { formatPciList } from './pci-list.js';
import { PciPlatform } from './platform.js';
import { checkAssignment } from './check.js';

/** Two ACS root ports with a NIC and an NVMe; a non-ACS port with a two-function NIC; a bus-reset-only pair. */
function platform(iommu = true): { p: PciPlatform; logs: string[] } {
  const logs: string[] = [];
  const host = hostConfig(
    [
      hostDev('00:00.0', 'host-bridge'),
      hostDev('00:01.0', 'root-port'),
      hostDev('01:00.0', 'nic', { parent: '00:01.0' }),
      hostDev('00:02.0', 'root-port'),
      hostDev('02:00.0', 'nvme', { parent: '00:02.0' }),
      hostDev('00:1c.0', 'root-port', { acs: false }),
      hostDev('03:00.0', 'nic', { parent: '00:1c.0', multifunction: true }),
      hostDev('03:00.1', 'nic', { parent: '00:1c.0', multifunction: true }),
      hostDev('00:03.0', 'root-port'),
      hostDev('04:00.0', 'nic', { parent: '00:03.0', reset: ['bus'], multifunction: true, acs: true }),
      hostDev('04:00.1', 'nic', { parent: '00:03.0', reset: ['bus'], multifunction: true, acs: true }),
      hostDev('00:04.0', 'root-port'),
      hostDev('05:00.0', 'nvme', { parent: '00:04.0', reset: [] }),
      hostDev('00:05.0', 'root-port'),
      hostDev('06:00.0', 'nic', { parent: '00:05.0', rmrr: [{ start: 0xe0000n, end: 0xeffffn, relaxable: false }] }),
      hostDev('06:00.1', 'nic', { parent: '00:05.0', multifunction: true, acs: true, rmrr: [{ start: 0x7b800000n, end: 0x7b9fffffn, relaxable: true }] }),
    ],
    { enabled: iommu },
  );
  return { p: new PciPlatform(host, { log: (m) => logs.push(m) }), logs };
}

function refuse(r: { ok: boolean; error?: string }): string {
  expect(r.ok).toBe(false);
  return r.error ?? '';
}

describe('assignable pool (xl pci-assignable-add/-remove/-list)', () => {
  it('moves endpoints between host and quarantine, and lists the pool', () => {
    const { p } = platform();
    expect(p.assignableList()).toEqual([]);
    expect(p.assignableAdd('01:00.0')).toEqual({ ok: true, warnings: [] });
    expect(p.assignableAdd('0000:02:00.0').ok).toBe(true);
    expect(p.ownerOf('01:00.0')).toEqual({ kind: 'quarantine' });
    expect(p.assignableList()).toEqual(['0000:01:00.0', '0000:02:00.0']);
    expect(p.resetLog.map((r) => r.method)).toEqual(['flr', 'flr']);
    expect(p.assignableRemove('01:00.0').ok).toBe(true);
    expect(p.assignableList()).toEqual(['0000:02:00.0']);
    expect(refuse(p.assignableRemove('01:00.0'))).toMatch(/is not assignable/);
  });

  it('refuses bridges and unknown devices, and assigned devices cannot leave the pool', () => {
    const { p } = platform();
    expect(refuse(p.assignableAdd('00:01.0'))).toMatch(/is a root-port, not an endpoint/);
    expect(refuse(p.assignableAdd('09:00.0'))).toMatch(/no PCI device 09:00.0/);
    p.assignableAdd('01:00.0');
    expect(p.assign([bdf('01:00.0')], 3).ok).toBe(true);
    expect(p.assignableList()).toEqual([]); // assigned devices are not listed, as in xl
    expect(refuse(p.assignableRemove('01:00.0'))).toMatch(/assigned to domain 3: release it/);
  });
});

describe('assignment rules', () => {
  it('assigns an assignable device, resetting it, and releases it back to quarantine', () => {
    const { p } = platform();
    p.assignableAdd('02:00.0');
    const r = p.assign([bdf('02:00.0')], 5);
    expect(r).toMatchObject({ ok: true, devices: ['0000:02:00.0'], resets: [{ bdf: '0000:02:00.0', method: 'flr' }] });
    expect(p.ownerOf('02:00.0')).toEqual({ kind: 'domain', domid: 5 });
    expect(p.devicesOf(5)).toEqual(['0000:02:00.0']);
    expect(p.release('02:00.0').ok).toBe(true);
    expect(p.ownerOf('02:00.0')).toEqual({ kind: 'quarantine' });
    expect(p.resetLog).toHaveLength(3); // pool entry, assign, release
    expect(refuse(p.release('02:00.0'))).toMatch(/not assigned to a domain \(it is quarantine\)/);
  });

  it('refuses a device that is not assignable unless seize=1', () => {
    const { p } = platform();
    const e = refuse(p.assign([bdf('01:00.0')], 1));
    expect(e).toContain('0000:01:00.0 is not assignable');
    expect(e).toContain('ringside pci assignable-add 0000:01:00.0');
    expect(e).toContain('seize=1');
    expect(p.assign([{ bdf: bdf('01:00.0'), seize: true }], 1).ok).toBe(true);
  });

  it('refuses non-endpoints in our words', () => {
    const { p } = platform();
    const e = refuse(p.assign([bdf('00:02.0')], 1));
    expect(e).toContain('0000:00:02.0 is a root-port, not an endpoint');
    expect(e).toContain('only endpoint devices can be given to a domain');
    expect(refuse(p.assign([bdf('00:00.0')], 1))).toContain('is a host-bridge, not an endpoint');
  });

  it('refuses a device assigned twice, to another domain or the same one', () => {
    const { p } = platform();
    p.assignableAdd('01:00.0');
    expect(p.assign([bdf('01:00.0')], 1).ok).toBe(true);
    expect(refuse(p.assign([bdf('01:00.0')], 2))).toContain('0000:01:00.0 is assigned to domain 1');
    expect(refuse(p.assign([bdf('01:00.0')], 1))).toContain('already assigned to domain 1');
    expect(refuse(p.assign([bdf('02:00.0'), { bdf: bdf('02:00.0'), seize: true }], 4))).toContain('listed twice');
  });

  it('a group goes whole to one domain: members bound to nobody block it, quarantined ones may stay', () => {
    const { p } = platform();
    p.assignableAdd('03:00.0');
    const e = refuse(p.assign([bdf('03:00.0')], 2));
    expect(e).toContain('IOMMU group');
    expect(e).toContain('also holds 0000:03:00.1 (Ethernet controller), which is not assignable');
    expect(e).toContain('ringside pci assignable-add 0000:03:00.1');
    p.assignableAdd('03:00.1');
    const r = p.assign([bdf('03:00.0')], 2);
    expect(r.ok).toBe(true);
    const rep = checkAssignment(p, [bdf('03:00.1')], 3);
    expect(rep.viable).toBe(false);
    expect(formatCheckReport(rep)).toContain('would be split: 0000:03:00.0 (Ethernet controller) belongs to domain 2');
    expect(p.assign([bdf('03:00.1')], 2).ok).toBe(true);
  });

  it('function * takes every function of the slot', () => {
    const { p } = platform();
    const r = p.assign([{ bdf: bdf('03:00.0'), allFunctions: true, seize: true }], 7);
    expect(r).toMatchObject({ ok: true, devices: ['0000:03:00.0', '0000:03:00.1'] });
  });

  it('RMRR: strict refuses a non-relaxable region with Xen\'s meaning, relaxed assigns with a warning', () => {
    const { p } = platform();
    p.assignableAdd('06:00.0');
    const e = refuse(p.assign([bdf('06:00.0')], 4));
    expect(e).toContain('has an RMRR at 0xe0000-0xeffff');
    expect(e).toContain('rdm_policy=strict refuses that');
    expect(e).toContain('set rdm_policy=relaxed');
    const r = p.assign([{ bdf: bdf('06:00.0'), rdmPolicy: 'relaxed' }], 4);
    expect(r.ok).toBe(true);
    if (r.ok) {
      expect(r.warnings.join('\n')).toContain('under rdm_policy=relaxed, a risk');
      expect(r.identityMaps).toEqual([{ bdf: '0000:06:00.0', start: 0xe0000n, end: 0xeffffn }]);
    }
    // a relaxable region needs no policy change
    p.assignableAdd('06:00.1');
    expect(p.assign([bdf('06:00.1')], 4).ok).toBe(true);
  });

  it('RMRR shared between devices: strict refuses assigning one alone', () => {
    const host = hostConfig([
      hostDev('00:01.0', 'root-port'),
      hostDev('01:00.0', 'nic', { parent: '00:01.0', rmrr: [{ start: 0x1000n, end: 0x1fffn, relaxable: true }] }),
      hostDev('00:02.0', 'root-port'),
      hostDev('02:00.0', 'nic', { parent: '00:02.0', rmrr: [{ start: 0x1000n, end: 0x1fffn, relaxable: true }] }),
    ]);
    const p = new PciPlatform(host);
    const e = refuse(p.assign([{ bdf: bdf('01:00.0'), seize: true }], 1));
    expect(e).toContain('shares its RMRR 0x1000-0x1fff with 0000:02:00.0');
    expect(p.assign([{ bdf: bdf('01:00.0'), seize: true, rdmPolicy: 'relaxed' }], 1).ok).toBe(true);
  });

  it('refuses a device without any reset method', () => {
    const { p } = platform();
    const e = refuse(p.assign([{ bdf: bdf('05:00.0'), seize: true }], 1));
    expect(e).toContain('0000:05:00.0 cannot be reset: it has no FLR, PM reset or bus reset');
  });

  it('bus reset only when nothing else on the bus belongs to another domain', () => {
    const { p } = platform();
    p.assignableAdd('04:00.0');
    p.assignableAdd('04:00.1');
    expect(p.assign([bdf('04:00.1')], 1)).toMatchObject({ ok: true, resets: [{ method: 'bus' }] });
    const e = refuse(p.assign([bdf('04:00.0')], 2));
    expect(e).toContain('a bus reset would also reset 0000:04:00.1, which domain 1 is using');
  });

  it('refuses everything when the platform has no IOMMU', () => {
    const { p } = platform(false);
    expect(p.groupOf('01:00.0')).toBeNull();
    expect(refuse(p.assignableAdd('01:00.0'))).toContain('iommu = "none"');
    const e = refuse(p.assign([{ bdf: bdf('01:00.0'), seize: true }], 1));
    expect(e).toContain('without an IOMMU a device\'s DMA cannot be confined');
  });

  it('names unknown devices and warns about permissive', () => {
    const { p } = platform();
    expect(refuse(p.assign([bdf('0a:00.0')], 1))).toContain('no PCI device 0000:0a:00.0 in host.cfg');
    const r = p.assign([{ bdf: bdf('01:00.0'), seize: true, permissive: true }], 1);
    expect(r.ok && r.warnings.join()).toContain('permissive=1 lets domain 1 write any config-space register');
  });
});

describe('config space and its filter', () => {
  function owned(permissive: boolean) {
    const { p, logs } = platform();
    p.assign([{ bdf: bdf('01:00.0'), seize: true, permissive }], 9);
    return { p, logs };
  }

  it('has the standard header built from host.cfg', () => {
    const { p } = platform();
    expect(p.configRead('01:00.0', CFG.VENDOR, 2)).toBe(0x8086);
    expect(p.configRead('01:00.0', CFG.DEVICE, 2)).toBe(0x10d3);
    expect(p.configRead('01:00.0', CFG.REVISION, 4)).toBe(0x02000001); // class code 0x020000 above revision 1
    expect(p.configRead('01:00.0', CFG.CLASS, 4)).toBe(0xffffffff); // unaligned dword: no such access
    expect(p.configRead('03:00.0', CFG.HEADER_TYPE, 1)).toBe(0x80);
    expect(p.configRead('00:01.0', CFG.HEADER_TYPE, 1)).toBe(0x01);
    expect(p.configRead('01:00.0', CFG.CAP_PTR, 1)).toBe(0x40);
  });

  it('a non-permissive owner may set command bits, size BARs and the interrupt line; the rest is dropped and logged', () => {
    const { p, logs } = owned(false);
    expect(p.configWrite('01:00.0', CFG.COMMAND, 2, CMD_BUS_MASTER | 2, 9)).toEqual({ applied: true });
    expect(p.configSpace('01:00.0')?.busMaster).toBe(true);
    expect(p.configWrite('01:00.0', CFG.BAR0, 4, 0xffffffff, 9).applied).toBe(true);
    expect(p.configRead('01:00.0', CFG.BAR0, 4, 9)).toBe(0xfffe0000); // 128 KiB, 32-bit memory
    p.configWrite('01:00.0', CFG.BAR0, 4, 0xfebc0000, 9);
    expect(p.configSpace('01:00.0')?.barAddress(0)).toBe(0xfebc0000);
    p.configWrite('01:00.0', CFG.BAR0 + 8, 4, 0xffffffff, 9);
    expect(p.configRead('01:00.0', CFG.BAR0 + 8, 4, 9)).toBe(0xffffffe1); // 32-byte I/O BAR
    expect(p.configWrite('01:00.0', CFG.INT_LINE, 1, 11, 9).applied).toBe(true);

    const r = p.configWrite('01:00.0', CFG.VENDOR, 2, 0x1234, 9);
    expect(r.applied).toBe(false);
    expect(r.dropped).toContain('vendor/device id');
    expect(p.configWrite('01:00.0', CFG.CACHE_LINE, 1, 0x10, 9).dropped).toContain('not writable without permissive');
    expect(p.configWrite('01:00.0', CFG.EXP_CAP + 8, 2, 0x8000, 9).applied).toBe(false); // no FLR from the owner
    expect(logs.some((l) => l.includes('partly dropped'))).toBe(true);
  });

  it('permissive lets the owner write implemented registers, including FLR', () => {
    const { p } = owned(true);
    expect(p.configWrite('01:00.0', CFG.CACHE_LINE, 1, 0x10, 9)).toEqual({ applied: true });
    p.configWrite('01:00.0', CFG.COMMAND, 2, CMD_BUS_MASTER, 9);
    const resets = p.resetLog.length;
    p.configWrite('01:00.0', CFG.EXP_CAP + 8, 2, 0x8000, 9);
    expect(p.resetLog.length).toBe(resets + 1);
    expect(p.configSpace('01:00.0')?.busMaster).toBe(false);
    expect(p.configRead('01:00.0', CFG.CACHE_LINE, 1)).toBe(0);
  });

  it('other domains cannot touch it: writes are refused and reads see an empty slot', () => {
    const { p } = owned(false);
    expect(p.configWrite('01:00.0', CFG.COMMAND, 2, CMD_BUS_MASTER, 4)).toMatchObject({ applied: false, dropped: expect.stringContaining('domain 4 does not own it') });
    expect(p.configRead('01:00.0', CFG.VENDOR, 2, 4)).toBe(0xffff);
    expect(p.configWrite('01:00.0', 0x3, 2, 0, 9).applied).toBe(false); // unaligned
    expect(p.configWrite('01:00.0', 0x100, 4, 0, 9).applied).toBe(false); // outside
  });
});

describe('pci list', () => {
  it('shows BDF, id, class, group, owner and faults', () => {
    const { p } = platform();
    p.assign([{ bdf: bdf('02:00.0'), seize: true }], 3);
    const text = formatPciList(p.list());
    expect(text.split('\n')[0]).toMatch(/^BDF\s+ID\s+CLASS\s+GROUP\s+OWNER\s+FAULTS$/);
    expect(text).toMatch(/0000:02:00\.0\s+1b36:0010\s+Non-Volatile memory controller\s+\d+\s+domain 3\s+0/);
    expect(text).toMatch(/0000:00:01\.0\s+1b36:000c\s+PCI bridge\s+\d+\s+platform/);
    const row = p.list().find((d) => d.bdf === '0000:02:00.0');
    expect(row).toMatchObject({ domid: 3, owner: 'domain 3', assignable: true });
  });
});
