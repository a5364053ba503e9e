import { describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadDomainFile, loadHostFile, loadSystem, loadSystemFromFiles } from './system.js';
import { MAX_CONFIG_BYTES } from './xlcfg.js';
import { configError } from './testing/expect-error.js';

const here = fileURLToPath(new URL('.', import.meta.url));
const DEFAULT = fileURLToPath(new URL('../../examples/default', import.meta.url));
const fixture = (name: string) => join(here, 'fixtures', name);

const HOST = `devices = [
  "bdf=00:01.0, type=root-port",
  "bdf=00:02.0, type=root-port",
  "bdf=00:03.0, type=pci-bridge",
  "bdf=01:00.0, type=nvme, parent=00:01.0, medium=disk0.img",
  "bdf=02:00.0, type=nic, parent=00:02.0, wire=tap:rs-up0, mac=02:00:00:00:00:99",
  "bdf=02:00.1, type=nic, parent=00:02.0",
]`;
const BLK = 'name = "blkdom"\ndriver_domain = 1\nrole = "blk"\n';
const NET = 'name = "netdom"\ndriver_domain = 1\nrole = "net"\n';
const guest = (name: string, extra = '') =>
  `name = "${name}"\ndisk = [ 'backend=blkdom, vdev=xvda, target=${name}.img' ]\nvif = [ 'backend=netdom, netns=rs-${name}' ]\n${extra}`;
const sys = (files: Record<string, string>) => loadSystemFromFiles(files, '/srv/sys');

describe('the embedded default system', () => {
  it('loads cleanly with driver domains first', () => {
    const s = loadSystem(DEFAULT);
    expect(s.domains.map((d) => `${d.name}:${d.role}`)).toEqual(['blkdom:blk', 'netdom:net', 'guest1:guest', 'guest2:guest']);
    expect(s.host.iommu).toEqual({ enabled: true, addressWidth: 48, cachingMode: false });
    expect(s.host.devices.map((d) => d.type)).toEqual(['host-bridge', 'root-port', 'root-port', 'nvme', 'nvme', 'nic']);
    const nvme = s.host.devices[3];
    expect(nvme).toMatchObject({ medium: join(DEFAULT, 'guest1-disk.img'), sizeBytes: 64 << 20, parent: { bus: 0, dev: 1, fn: 0 }, multifunction: true });
    const [blk, net, g1, g2] = s.domains;
    expect(blk).toMatchObject({ driverDomain: true, onCrash: 'restart', seccomp: true, pciSeize: true, pci: [{ bdf: { bus: 1, dev: 0, fn: 0 }, allFunctions: true }] });
    expect(blk.assigned).toEqual([{ domain: 0, bus: 1, dev: 0, fn: 0 }, { domain: 0, bus: 1, dev: 0, fn: 1 }]);
    expect(net.pci[0].bdf).toMatchObject({ bus: 2 });
    expect(g1.disks[0]).toMatchObject({ backend: 'blkdom', vdev: 'xvda', devid: 51712, target: 'pci:0000:01:00.0', device: { bus: 1, dev: 0, fn: 0 }, access: 'w' });
    expect(g1.vifs[0]).toMatchObject({ backend: 'netdom', mac: '00:16:3e:00:00:01', ip: { cidr: '10.137.0.1/24' }, netns: 'rs-guest1' });
    expect(g2.vifs[0]).toMatchObject({ mac: '00:16:3e:00:00:02', ip: { cidr: '10.137.0.2/24' }, netns: 'rs-guest2' });
    expect(g2.disks[0].target).toBe('pci:0000:01:00.1');
  });

  it('each example file also loads on its own', () => {
    expect(loadDomainFile(join(DEFAULT, 'guest1.cfg')).name).toBe('guest1');
    expect(loadHostFile(join(DEFAULT, 'host.cfg')).devices).toHaveLength(6);
  });
});

describe('device disks (target=pci:)', () => {
  const host = `iommu = "vtd"\ndevices = [ "bdf=00:01.0, type=root-port", "bdf=01:00.0, type=nvme, parent=00:01.0, medium=/srv/m.img, size=1M", "bdf=02:00.0, type=nic" ]\n`;
  const blk = (pci: string) => `name = "blkdom"\ndriver_domain = 1\nrole = "blk"\npci = [ ${pci} ]\npci_seize = 1\n`;
  const g = (target: string) => `name = "g"\ndisk = [ 'backend=blkdom, vdev=xvda, target=${target}' ]\n`;
  it('accepts an nvme function passed through to the backend', () => {
    const s = sys({ 'host.cfg': host, 'blkdom.cfg': blk('"01:00.0"'), 'g.cfg': g('pci:01:00.0') });
    expect(s.domains[1].disks[0].device).toEqual({ domain: 0, bus: 1, dev: 0, fn: 0 });
  });
  it('refuses a device the backend does not own, a non-nvme device, an unknown address, and size=', () => {
    expect(configError(() => sys({ 'host.cfg': host, 'blkdom.cfg': blk(''), 'g.cfg': g('pci:01:00.0') })).message).toMatch(/not passed through to the backend 'blkdom'.*add "01:00\.0" to pci/);
    expect(configError(() => sys({ 'host.cfg': host, 'blkdom.cfg': blk('"01:00.0"'), 'g.cfg': g('pci:02:00.0') })).message).toMatch(/is a nic, not an nvme controller/);
    expect(configError(() => sys({ 'host.cfg': host, 'blkdom.cfg': blk('"01:00.0"'), 'g.cfg': g('pci:07:00.0') })).message).toMatch(/is not a device of/);
    expect(configError(() => sys({ 'host.cfg': host, 'blkdom.cfg': blk('"01:00.0"'), 'g.cfg': `name = "g"\ndisk = [ 'backend=blkdom, vdev=xvda, target=pci:01:00.0, size=1M' ]\n` })).message).toMatch(/size= has no meaning for a device target/);
    expect(configError(() => sys({ 'host.cfg': host, 'blkdom.cfg': blk('"01:00.0"'), 'g.cfg': g('pci:zz') })).message).toMatch(/is not a PCI address/);
  });
});

describe('broken fixtures', () => {
  const cases: [string, string, number, string, RegExp][] = [
    ['bad-backend', 'guest.cfg', 5, 'disk', /key 'disk\[1\]': backend 'blkdomm' is not a domain in this system; did you mean 'blkdom'\? \(domains: blkdom, guest\)/],
    ['cycle', 'alpha.cfg', 4, 'vif', /backends form a cycle: alpha -> beta -> alpha/],
    ['bad-syntax', 'guest.cfg', 2, 'name', /unterminated string/],
    ['pci-conflict', 'blk2.cfg', 3, 'pci', /PCI device 01:00\.0 is already assigned to 'blk1' \(.*blk1\.cfg:3\)/],
  ];
  for (const [dir, file, line, key, re] of cases) {
    it(`${dir} fails at ${file}:${line}`, () => {
      const e = configError(() => loadSystem(fixture(dir)));
      expect(e.file).toBe(join(fixture(dir), file));
      expect(e.line).toBe(line);
      expect(e.key).toBe(key);
      expect(e.message.startsWith(`${join(fixture(dir), file)}:${line}`)).toBe(true);
      expect(e.message).toMatch(re);
    });
  }
});

describe('loading from disk', () => {
  const tmp = () => mkdtempSync(join(tmpdir(), 'rs-cfg-'));

  it('ignores hidden files, non-cfg files and directories; host.cfg is optional', () => {
    const d = tmp();
    try {
      writeFileSync(join(d, 'g.cfg'), 'name = "g"');
      writeFileSync(join(d, '.swap.cfg'), 'garbage "');
      writeFileSync(join(d, 'notes.txt'), 'garbage "');
      mkdirSync(join(d, 'sub.cfg'));
      const s = loadSystem(d);
      expect(s.domains.map((x) => x.name)).toEqual(['g']);
      expect(s.host.devices).toEqual([]);
      expect(s.dir).toBe(d);
    } finally {
      rmSync(d, { recursive: true });
    }
  });

  it('refuses non-UTF-8, oversize files, a missing directory and a directory without domains', () => {
    const d = tmp();
    try {
      writeFileSync(join(d, 'g.cfg'), Buffer.concat([Buffer.from('name = "g"\n# caf'), Buffer.from([0xe9]), Buffer.from('\n')]));
      let e = configError(() => loadSystem(d));
      expect(e.message).toBe(`${join(d, 'g.cfg')}:2:6: file is not valid UTF-8; re-save it as UTF-8 (plain ASCII is fine)`);
      writeFileSync(join(d, 'g.cfg'), Buffer.alloc(MAX_CONFIG_BYTES + 1, 0x20));
      e = configError(() => loadSystem(d));
      expect(e.message).toMatch(/g\.cfg: file is \d+ bytes, more than the 1048576-byte limit/);
      rmSync(join(d, 'g.cfg'));
      e = configError(() => loadSystem(d));
      expect(e.message).toMatch(/no domain configs \(\*\.cfg\)/);
      e = configError(() => loadSystem(join(d, 'nope')));
      expect(e.message).toMatch(/nope: cannot read the system directory \(ENOENT\)/);
      symlinkSync(join(d, 'missing'), join(d, 'dangling.cfg'));
      e = configError(() => loadSystem(d));
      expect(e.message).toMatch(/dangling\.cfg: cannot read the file \(ENOENT\)/);
      e = configError(() => loadDomainFile(join(d, 'nope.cfg')));
      expect(e.message).toMatch(/cannot read the file \(ENOENT\)/);
    } finally {
      rmSync(d, { recursive: true });
    }
  });
});

describe('cross-file rules', () => {
  it('orders backends first, including a driver domain that uses another', () => {
    const s = sys({
      'a-guest.cfg': guest('g1'),
      'host.cfg': HOST,
      'netdom.cfg': NET + "disk = [ 'backend=blkdom, vdev=xvda, target=net.img' ]",
      'blkdom.cfg': BLK,
    });
    expect(s.domains.map((d) => d.name)).toEqual(['blkdom', 'netdom', 'g1']);
  });

  it('infers roles from use, from PCI devices and from an uplink', () => {
    const base = { 'host.cfg': HOST };
    expect(sys({ ...base, 'b.cfg': 'name = "blkdom"\ndriver_domain = 1', 'n.cfg': 'name = "netdom"\ndriver_domain = 1', 'g.cfg': guest('g') }).domains.map((d) => d.role)).toEqual(['blk', 'net', 'guest']);
    expect(sys({ ...base, 'x.cfg': 'name = "x"\ndriver_domain = 1\npci = [ "01:00.0" ]' }).domains[0].role).toBe('blk');
    expect(sys({ ...base, 'x.cfg': 'name = "x"\ndriver_domain = 1\npci = [ "02:00.*" ]' }).domains[0].role).toBe('net');
    expect(sys({ ...base, 'x.cfg': 'name = "x"\ndriver_domain = 1\nuplink = "tap:up1"' }).domains[0].role).toBe('net');
  });

  it('expands function * to every function of the slot', () => {
    const s = sys({ 'host.cfg': HOST, 'x.cfg': 'name = "x"\ndriver_domain = 1\nrole = "net"\npci = [ "02:00.*", "01:00.0" ]' });
    expect(configError(() => sys({ 'host.cfg': HOST, 'x.cfg': 'name = "x"\ndriver_domain = 1\npci = [ "02:00.*", "01:00.0" ]' })).message).toMatch(/both an nvme and a nic/);
    expect(s.domains[0].assigned.map((b) => [b.bus, b.dev, b.fn])).toEqual([
      [2, 0, 0],
      [2, 0, 1],
      [1, 0, 0],
    ]);
    expect(s.domains[0].pci[0].allFunctions).toBe(true);
  });

  const bad: [string, Record<string, string>, string, number, string, RegExp][] = [
    ['duplicate names', { 'a.cfg': 'name = "g"', 'b.cfg': '\nname = "g"' }, 'b.cfg', 2, 'name', /domain name 'g' is already used by \/srv\/sys\/a\.cfg:1; names must be unique/],
    ['backend not a driver domain', { 'a.cfg': 'name = "blkdom"', 'g.cfg': "name = \"g\"\ndisk = [ 'backend=blkdom, vdev=xvda, target=x' ]" }, 'g.cfg', 2, 'disk', /backend 'blkdom' is not a driver domain; add driver_domain = 1 to \/srv\/sys\/a\.cfg/],
    ['own backend', { 'b.cfg': BLK + "disk = [ 'backend=blkdom, vdev=xvda, target=x' ]" }, 'b.cfg', 4, 'disk', /'blkdom' cannot be its own backend/],
    ['disk on a net domain', { 'n.cfg': NET, 'g.cfg': "name = \"g\"\ndisk = [ 'backend=netdom, vdev=xvda, target=x' ]" }, 'g.cfg', 2, 'disk', /backend 'netdom' is a net driver domain; disks need a blk driver domain; add a driver domain with role = "blk"/],
    ['vif on a blk domain', { 'b.cfg': BLK, 'n.cfg': NET, 'g.cfg': "name = \"g\"\nvif = [ 'backend=blkdom' ]" }, 'g.cfg', 2, 'vif', /backend 'blkdom' is a blk driver domain; vifs need a net driver domain; use backend=netdom/],
    ['both kinds', { 'x.cfg': 'name = "x"\ndriver_domain = 1', 'g.cfg': "name = \"g\"\ndisk = [ 'backend=x, vdev=xvda, target=i' ]\nvif = [ 'backend=x' ]" }, 'x.cfg', 1, 'name', /is backend for disks \(\/srv\/sys\/g\.cfg:2\) and vifs \(\/srv\/sys\/g\.cfg:3\)/],
    ['unknown role', { 'x.cfg': 'name = "x"\ndriver_domain = 1' }, 'x.cfg', 2, 'driver_domain', /cannot tell whether 'x' is a block or a network driver domain; add role = "blk" or role = "net"/],
    ['uplink on blk', { 'b.cfg': BLK + 'uplink = "tap:u"' }, 'b.cfg', 4, 'uplink', /uplink needs a net driver domain, but 'blkdom' is a blk driver domain/],
    ['pci not in host', { 'host.cfg': HOST, 'b.cfg': BLK + 'pci = [ "05:00.0" ]' }, 'b.cfg', 4, 'pci', /PCI device 05:00\.0 is not in the platform; add it to \/srv\/sys\/host\.cfg devices, or fix the BDF \(devices: 00:01\.0, 00:02\.0/],
    ['pci slot not in host', { 'host.cfg': HOST, 'b.cfg': BLK + 'pci = [ "05:00.*" ]' }, 'b.cfg', 4, 'pci', /slot 05:00\.\* is not in the platform/],
    ['pci without host.cfg', { 'b.cfg': BLK + 'pci = [ "01:00.0" ]' }, 'b.cfg', 4, 'pci', /add it to host\.cfg devices, or fix the BDF \(devices: none\)/],
    ['pci bridge', { 'host.cfg': HOST, 'b.cfg': BLK + 'pci = [ "00:03.0" ]' }, 'b.cfg', 4, 'pci', /00:03\.0 is a pci-bridge: Non-endpoint PCI devices cannot be assigned/],
    ['pci twice in one domain', { 'host.cfg': HOST, 'b.cfg': BLK + 'pci = [ "01:00.0",\n "01:00.0" ]' }, 'b.cfg', 5, 'pci', /already assigned to this domain/],
    ['pci * overlaps', { 'host.cfg': HOST, 'x.cfg': 'name = "x"\ndriver_domain = 1\npci = [ "02:00.*" ]', 'y.cfg': 'name = "y"\ndriver_domain = 1\nrole = "net"\npci = [ "02:00.1" ]' }, 'y.cfg', 4, 'pci', /PCI device 02:00\.1 is already assigned to 'x'/],
    ['pci with iommu none', { 'host.cfg': 'iommu = "none"\n' + HOST, 'b.cfg': BLK + 'pci = [ "01:00.0" ]' }, 'b.cfg', 4, 'pci', /PCI passthrough needs an IOMMU.*set iommu = "vtd" in \/srv\/sys\/host\.cfg/],
    ['same disk twice', { 'b.cfg': BLK, 'g.cfg': "name = \"g\"\ndisk = [ 'backend=blkdom, vdev=xvda, target=a',\n 'backend=blkdom, vdev=d0, target=b' ]" }, 'g.cfg', 3, 'disk', /vdev d0 is the same disk \(id 51712\) as the entry at line 2/],
    ['shared writable image', { 'b.cfg': BLK, 'n.cfg': NET, 'g.cfg': guest('g'), 'h.cfg': "name = \"h\"\ndisk = [ 'backend=blkdom, vdev=xvda, target=g.img, access=ro' ]" }, 'h.cfg', 2, 'disk', /target g\.img is also used at \/srv\/sys\/g\.cfg:2/],
    ['image is a medium', { 'host.cfg': HOST, 'b.cfg': BLK, 'g.cfg': "name = \"g\"\ndisk = [ 'backend=blkdom, vdev=xvda, target=disk0.img' ]" }, 'g.cfg', 2, 'disk', /raw medium of a PCI device at \/srv\/sys\/host\.cfg:5 \(medium of 01:00\.0\)/],
    ['duplicate MAC', { 'n.cfg': NET, 'g.cfg': "name = \"g\"\nvif = [ 'backend=netdom, mac=00:16:3e:00:00:01' ]", 'h.cfg': "name = \"h\"\nvif = [ 'backend=netdom, mac=00:16:3E:00:00:01' ]" }, 'h.cfg', 2, 'vif', /MAC 00:16:3e:00:00:01 is already used at \/srv\/sys\/g\.cfg:2; every vif needs its own MAC/],
    ['MAC of a host NIC', { 'host.cfg': HOST, 'n.cfg': NET, 'g.cfg': "name = \"g\"\nvif = [ 'backend=netdom, mac=02:00:00:00:00:99' ]" }, 'g.cfg', 2, 'vif', /already used at \/srv\/sys\/host\.cfg:6 \(NIC 02:00\.0\)/],
    ['duplicate IP', { 'n.cfg': NET, 'g.cfg': "name = \"g\"\nvif = [ 'backend=netdom, ip=10.0.0.1/24' ]", 'h.cfg': "name = \"h\"\nvif = [ 'backend=netdom, ip=10.0.0.1/24' ]" }, 'h.cfg', 2, 'vif', /ip 10\.0\.0\.1 is already used/],
    ['shared netns', { 'b.cfg': BLK, 'n.cfg': NET, 'g.cfg': guest('g'), 'h.cfg': "name = \"h\"\nvif = [ 'backend=netdom, netns=rs-g' ]" }, 'h.cfg', 2, 'vif', /netns rs-g is already used by 'g'/],
    ['uplink TAP is a NIC wire', { 'host.cfg': HOST, 'n.cfg': NET + 'uplink = "tap:rs-up0"' }, 'n.cfg', 4, 'uplink', /TAP rs-up0 is already used at \/srv\/sys\/host\.cfg:6/],
  ];
  for (const [what, files, file, line, key, re] of bad) {
    it(`refuses ${what}`, () => {
      const e = configError(() => sys(files));
      expect(relative('/srv/sys', e.file)).toBe(file);
      expect(e).toMatchObject({ line, key });
      expect(e.message.startsWith(`/srv/sys/${file}:${line}: key '${key}`)).toBe(true);
      expect(e.message).toMatch(re);
    });
  }

  it('refuses a confined guest whose vifs name two namespaces, and says how to fix it', () => {
    const e = configError(() => sys({ 'n.cfg': NET, 'g.cfg': "name = \"g\"\nvif = [ 'backend=netdom, netns=ns1',\n 'backend=netdom, netns=ns2' ]" }));
    expect(e).toMatchObject({ line: 3, key: 'vif' });
    expect(e.message).toMatch(/netns ns2 differs from netns ns1 of the first vif: a confined guest lives in one network namespace/);
    expect(e.message).toMatch(/same netns=, or set seccomp = 0/);
    // the default is one namespace per guest, so vifs without netns= never split
    expect(sys({ 'n.cfg': NET, 'g.cfg': "name = \"g\"\nvif = [ 'backend=netdom', 'backend=netdom' ]" }).domains[1].vifs).toHaveLength(2);
    expect(sys({ 'n.cfg': NET, 'g.cfg': "name = \"g\"\nseccomp = 0\nvif = [ 'backend=netdom, netns=ns1', 'backend=netdom, netns=ns2' ]" }).domains[1].seccomp).toBe(false);
  });

  it('refuses a default namespace name that is too long, and one another guest named', () => {
    const long = configError(() => sys({ 'n.cfg': NET, 'g.cfg': "name = \"averyveryverylongguest\"\nvif = [ 'backend=netdom' ]" }));
    expect(long.message).toMatch(/default namespace rs-averyveryverylongguest is not a valid netns name.*set netns= for this vif/);
    const clash = configError(() => sys({ 'n.cfg': NET, 'g.cfg': "name = \"g\"\nvif = [ 'backend=netdom' ]", 'h.cfg': "name = \"h\"\nvif = [ 'backend=netdom, netns=rs-g' ]" }));
    expect(clash.message).toMatch(/netns rs-g is already used by 'g'/);
  });

  it('lets one guest keep several vifs in its own namespace', () => {
    const s = sys({ 'n.cfg': NET, 'g.cfg': "name = \"g\"\nvif = [ 'backend=netdom, netns=ns', 'backend=netdom, netns=ns' ]" });
    expect(s.domains[1].vifs.map((v) => v.devid)).toEqual([0, 1]);
    expect(s.domains[1].vifs[0].mac).not.toBe(s.domains[1].vifs[1].mac);
  });

  it('shares a read-only image between guests', () => {
    const ro = (n: string) => `name = "${n}"\ndisk = [ 'backend=blkdom, vdev=xvda, target=base.img, access=ro' ]`;
    expect(sys({ 'b.cfg': BLK, 'g.cfg': ro('g'), 'h.cfg': ro('h') }).domains).toHaveLength(3);
  });

  it('handles a system of 200 guests', () => {
    const files: Record<string, string> = { 'b.cfg': BLK, 'n.cfg': NET };
    for (let i = 0; i < 200; i++) files[`g${i}.cfg`] = guest(`g${i}`);
    const s = sys(files);
    expect(s.domains.slice(0, 2).map((d) => d.name)).toEqual(['blkdom', 'netdom']);
    expect(s.domains).toHaveLength(202);
  });
});
