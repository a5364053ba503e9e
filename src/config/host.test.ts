import { describe, expect, it } from 'vitest';
import { parseHost } from './host.js';
import { parseXlCfg } from './xlcfg.js';
import { configError } from './testing/expect-error.js';

const F = 'sys/host.cfg';
const host = (devices: string[], head = 'iommu = "vtd"') =>
  parseHost(parseXlCfg(`${head}\ndevices = [\n${devices.map((d) => `  "${d}",`).join('\n')}\n]\n`, F, '/srv/sys'));
const RP1 = 'bdf=00:01.0, type=root-port';
const RP2 = 'bdf=00:02.0, type=root-port, acs=0';

describe('host.cfg', () => {
  it('parses the documented example with per-type defaults', () => {
    const h = host(
      [
        'bdf=00:00.0, type=host-bridge',
        RP1,
        RP2,
        'bdf=01:00.0, type=nvme, parent=00:01.0, medium=disk0.img, size=256M',
        'bdf=02:00.0, type=nic, parent=00:02.0, wire=tap:rs-up0, mac=52:54:00:12:34:56, offloads=0',
        'bdf=03:00.0, type=nic, wire=cable:04:00.0, rmrr=0xe0000-0xeffff:relaxable, rmrr=0x100000-0x1fffff, reset=flr+bus',
        'bdf=04:00.0, type=nic, wire=cable:03:00.0, vendor=8086, device=0x100e, class=0x020000',
      ],
      'iommu = "vtd"\niommu_aw = 39\niommu_caching_mode = 1',
    );
    expect(h.file).toBe(F);
    expect(h.iommu).toEqual({ enabled: true, addressWidth: 39, cachingMode: true });
    const [hb, rp1, rp2, nvme, nic, c1, c2] = h.devices;
    expect(hb).toMatchObject({ type: 'host-bridge', vendor: 0x8086, classCode: 0x060000, acs: false, resetMethods: [], rmrr: [], line: 5 });
    expect(rp1).toMatchObject({ type: 'root-port', acs: true, classCode: 0x060400 });
    expect('parent' in rp1).toBe(false);
    expect(rp2).toMatchObject({ acs: false });
    expect(nvme).toMatchObject({ bdf: { bus: 1, dev: 0, fn: 0 }, parent: { bus: 0, dev: 1, fn: 0 }, medium: '/srv/sys/disk0.img', sizeBytes: 256 << 20, classCode: 0x010802, resetMethods: ['flr'], line: 8 });
    expect(nic).toMatchObject({ wire: { kind: 'tap', name: 'rs-up0' }, mac: '52:54:00:12:34:56', classCode: 0x020000, offloads: false });
    expect('offloads' in c1).toBe(false);
    expect(c1.rmrr).toEqual([
      { start: 0xe0000n, end: 0xeffffn, relaxable: true },
      { start: 0x100000n, end: 0x1fffffn, relaxable: false },
    ]);
    expect(c1).toMatchObject({ wire: { kind: 'cable', peer: { bus: 4 } }, resetMethods: ['flr', 'bus'] });
    expect(c2).toMatchObject({ vendor: 0x8086, device: 0x100e });
  });

  it('defaults: vtd, 48-bit, no caching mode, nic wire none, multifunction implied', () => {
    const h = parseHost(parseXlCfg('devices = [ "bdf=05:00.0, type=nic", "bdf=05:00.1, type=nic", "bdf=06:00.0, type=nic, reset=none" ]', F));
    expect(h.iommu).toEqual({ enabled: true, addressWidth: 48, cachingMode: false });
    expect(h.devices.map((d) => d.multifunction)).toEqual([true, true, false]);
    expect(h.devices[0].wire).toEqual({ kind: 'none' });
    expect(h.devices[2].resetMethods).toEqual([]);
    expect(parseHost(parseXlCfg('iommu = "none"', F)).iommu.enabled).toBe(false);
  });

  const bad: [string[], number, RegExp, string?][] = [
    [[RP1, RP1], 4, /BDF 0000:00:01\.0 is already used \(line 3\)/],
    [['bdf=01:00.0, type=nvme, parent=00:01.0, medium=x'], 3, /parent 0000:00:01\.0 is not a device in this file/],
    [['bdf=00:01.0, type=nic', 'bdf=01:00.0, type=nic, parent=00:01.0'], 4, /parent 0000:00:01\.0 is a nic, not a root-port or pci-bridge/],
    [[RP1, 'bdf=00:03.0, type=nic, parent=00:01.0'], 4, /same bus as its parent bridge/],
    [[RP1, RP2, 'bdf=01:00.0, type=nic, parent=00:01.0', 'bdf=01:01.0, type=nic, parent=00:02.0'], 6, /bus 0000:01 is already below 0000:00:01\.0/],
    [[RP1, 'bdf=01:00.0, type=nic, parent=00:01.0', 'bdf=01:01.0, type=nic'], 5, /has no parent but bus 0000:01 is below bridge 0000:00:01\.0; add parent=00:01\.0/],
    [[RP1, 'bdf=00:02.0, type=root-port, parent=00:01.0'], 4, /a root-port sits on the root complex and has no parent/],
    [['bdf=01:00.0, type=pci-bridge, parent=02:00.0', 'bdf=02:00.0, type=pci-bridge, parent=01:00.0'], 3, /loops back/],
    [['bdf=0001:00:01.0, type=root-port', 'bdf=01:00.0, type=nic, parent=0001:00:01.0'], 4, /another PCI segment/],
    [['bdf=05:00.1, type=nic'], 3, /function 1 exists but function 0 of the slot does not/],
    [['bdf=05:00.0, type=nic, multifunction=0', 'bdf=05:00.1, type=nic'], 3, /slot has 2 functions but multifunction=0/],
    [['bdf=03:00.0, type=nic, wire=cable:04:00.0'], 3, /cable peer 0000:04:00\.0 is not a device/],
    [['bdf=03:00.0, type=nic, wire=cable:03:00.0'], 3, /cannot be cabled to itself/],
    [['bdf=03:00.0, type=nic, wire=cable:04:00.0', 'bdf=04:00.0, type=nic'], 3, /cable to 0000:04:00\.0 is one-sided; add wire=cable:03:00\.0 to 0000:04:00\.0 \(line 4\)/],
    [['bdf=03:00.0, type=nic, wire=cable:04:00.0', 'bdf=04:00.0, type=nvme, medium=m'], 3, /is a nvme, not a nic/],
    [['bdf=03:00.0, type=nic, wire=tap:t0', 'bdf=04:00.0, type=nic, wire=tap:t0'], 4, /TAP t0 is already used by 0000:03:00\.0/],
    [['bdf=03:00.0, type=nic, mac=02:00:00:00:00:01', 'bdf=04:00.0, type=nic, mac=02:00:00:00:00:01'], 4, /MAC 02:00:00:00:00:01 is already used/],
    [['bdf=03:00.0, type=nvme, medium=a.img', 'bdf=04:00.0, type=nvme, medium=./a.img'], 4, /medium \/srv\/sys\/a\.img is already used/],
    [['bdf=03:00.0, type=nvme'], 3, /an nvme device needs medium=/],
    [['bdf=03:00.0, type=nvme, medium=m, size=3'], 3, /size: .*not a multiple of 512/],
    [['bdf=03:00.0, type=gpu'], 3, /type="gpu" is not a device type/],
    [['bdf=03:00.0, type=nics'], 3, /did you mean 'nic'/],
    [['type=nic'], 3, /missing bdf=/],
    [['bdf=03:00.0'], 3, /missing type=/],
    [['bdf=3:0.9, type=nic'], 3, /bdf=: '3:0.9' is not a PCI address/],
    [['bdf=03:00.0, type=nic, acs=2'], 3, /acs="2": expected 0 or 1/],
    [['bdf=03:00.0, type=nic, offloads=yes'], 3, /offloads="yes": expected 0 or 1/],
    [['bdf=03:00.0, type=nvme, medium=m, offloads=1'], 3, /offloads/],
    [['bdf=03:00.0, type=nic, vendor=0xfffff'], 3, /vendor="0xfffff": expected hex up to 0xffff/],
    [['bdf=03:00.0, type=nic, vendor=ffff'], 3, /not a valid vendor id/],
    [['bdf=03:00.0, type=nic, medium=x'], 3, /medium= applies only to nvme devices, not nic/],
    [['bdf=03:00.0, type=nvme, medium=x, wire=none'], 3, /wire= applies only to nic devices/],
    [[RP1 + ', rmrr=0x0-0xfff'], 3, /rmrr= applies only to endpoint devices/],
    [['bdf=03:00.0, type=nic, rmrr=0xe0000-0xe0fff:sometimes'], 3, /is not a region/],
    [['bdf=03:00.0, type=nic, rmrr=0xe0001-0xeffff'], 3, /not 4 KiB page aligned/],
    [['bdf=03:00.0, type=nic, rmrr=0xf0000-0xeffff'], 3, /end is below start/],
    [['bdf=03:00.0, type=nic, reset=warm'], 3, /"warm" is not a reset method/],
    [['bdf=03:00.0, type=nic, reset=flr+flr'], 3, /flr is listed twice/],
    [['bdf=03:00.0, type=nic, wire=usb'], 3, /wire="usb" is not a wire/],
    [['bdf=03:00.0, type=nic, colour=red'], 3, /unknown device option 'colour'/],
    [['bdf=03:00.0, type=nic, type=nvme'], 3, /option 'type' is given twice/],
  ];
  for (const [devices, line, re] of bad) {
    it(`refuses ${JSON.stringify(devices.at(-1)?.slice(0, 60))} (${re.source.slice(0, 30)})`, () => {
      const e = configError(() => host(devices));
      expect(e.message).toMatch(re);
      expect(e).toMatchObject({ file: F, line, key: 'devices' });
      expect(e.message.startsWith(`${F}:${line}: key 'devices[`)).toBe(true);
    });
  }

  it('refuses bad top-level settings', () => {
    expect(configError(() => host([], 'iommu = "amd"')).message).toMatch(/^sys\/host\.cfg:1: key 'iommu': "amd" is not one of "vtd", "none"/);
    expect(configError(() => host([], 'iommu_aw = 40')).message).toMatch(/key 'iommu_aw': 40 is not a supported address width/);
    expect(configError(() => host([], 'iommu_aw = 57')).message).toMatch(/out of range/);
    expect(configError(() => host([], 'iommu = "none"\niommu_aw = 48')).message).toMatch(/has no effect with iommu = "none"/);
    expect(configError(() => host([], 'devics = []')).message).toMatch(/unknown setting in host\.cfg; did you mean 'devices'\?/);
    expect(configError(() => host([], 'name = "host"')).message).toMatch(/known: host, iommu, iommu_aw, iommu_caching_mode, devices, cpu_mask, peers/);
    expect(configError(() => host([], 'host = "a b"')).message).toMatch(/key 'host': "a b" is not a host name/);
    expect(host([], 'host = "a"').name).toBe('a');
    expect(host([]).name).toBe('localhost');
    expect(host([], 'cpu_mask = [ "aes", "avx2" ]\npeers = [ "/var/lib/rs-b/" ]')).toMatchObject({ cpuMask: ['aes', 'avx2'], peers: ['/var/lib/rs-b'] });
    expect(host([])).toMatchObject({ cpuMask: [], peers: [] });
    expect(configError(() => host([], 'cpu_mask = "aes"')).message).toMatch(/key 'cpu_mask': expected a list/);
    expect(configError(() => host([], 'cpu_mask = [ "aes", "-avx" ]')).message).toMatch(/cpu_mask\[1\].*"-avx" is not a CPU feature name/);
    expect(configError(() => host([], 'peers = [ "rs-b" ]')).message).toMatch(/"rs-b" is not an absolute state directory/);
    expect(configError(() => host([], `peers = [ ${Array(17).fill('"/a"').join(', ')} ]`)).message).toMatch(/17 entries; at most 16/);
    const many = Array.from({ length: 1025 }, (_, i) => `bdf=${(i >> 5).toString(16)}:${(i & 31).toString(16)}.0, type=nic`);
    expect(configError(() => host(many)).message).toMatch(/1025 entries; at most 1024/);
  });

  it('handles a large valid platform', () => {
    const devs = Array.from({ length: 1000 }, (_, i) => `bdf=${(i >> 5).toString(16)}:${(i & 31).toString(16)}.0, type=nic`);
    expect(host(devs).devices).toHaveLength(1000);
  });
});
