import { describe, expect, it } from 'vitest';
import { parseDomain } from './domain.js';
import { parseXlCfg } from './xlcfg.js';
import { configError } from './testing/expect-error.js';

const F = 'examples/default/guest1.cfg';
const dom = (s: string) => parseDomain(parseXlCfg(s, F, '/srv/sys'));

describe('domain config', () => {
  it('parses a guest with defaults', () => {
    const d = dom(`name = "guest1"\nmemory = 256\ndisk = ['backend=blkdom, vdev=xvda, target=g.img']\nvif = ['backend=netdom']`);
    expect(d).toMatchObject({
      file: F,
      name: 'guest1',
      memoryMiB: 256,
      vcpus: 1,
      type: 'pv',
      driverDomain: false,
      role: undefined,
      pci: [],
      onCrash: 'destroy',
      seccomp: true,
      uplink: undefined,
      rdm: { strategy: 'ignore', policy: 'strict' },
    });
    expect(d.disks[0]).toMatchObject({ target: '/srv/sys/g.img', where: { file: F, line: 3, key: 'disk', index: 0 } });
    expect(d.vifs[0].where.line).toBe(4);
    expect(d.at.memory).toMatchObject({ line: 2, key: 'memory' });
    expect(dom('name = "g"').memoryMiB).toBe(128);
    expect(dom('name = "g"\nmemory = "512"').memoryMiB).toBe(512);
  });

  it('parses a driver domain: restart on crash, sandboxed, pci defaults from the domain', () => {
    const d = dom(`name = "netdom"\ndriver_domain = 1\nrole = "net"\npci_permissive = 1\nrdm = "strategy=host,policy=relaxed"\npci = [ "02:00.0", "03:00.0,permissive=0" ]\nuplink = "tap:rs-up0"\nvcpus = 2\ntype = "pvh"`);
    expect(d).toMatchObject({ driverDomain: true, role: 'net', onCrash: 'restart', seccomp: true, uplink: { kind: 'tap', name: 'rs-up0' }, vcpus: 2, type: 'pvh', pciPermissive: true });
    expect(d.pci.map((p) => [p.permissive, p.rdmPolicy])).toEqual([
      [true, 'relaxed'],
      [false, 'relaxed'],
    ]);
    expect(dom('name = "b"\ndriver_domain = 1\non_crash = "destroy"\nseccomp = 0')).toMatchObject({ onCrash: 'destroy', seccomp: false });
  });

  it('parses a VM: direct kernel boot as xl composes it, paths against the config directory', () => {
    const d = dom(`name = "vm1"\ntype = "hvm"\nkernel = "vm/vmlinuz"\nramdisk = "/boot/initrd.gz"\nroot = "/dev/vda"\nextra = "console=ttyS0 quiet"\nvcpus = 2\ndisk = ['backend=blkdom, vdev=xvda, target=vm.img']`);
    expect(d).toMatchObject({ type: 'hvm', vcpus: 2, onCrash: 'destroy', vm: { kernel: '/srv/sys/vm/vmlinuz', ramdisk: '/boot/initrd.gz', cmdline: 'root=/dev/vda console=ttyS0 quiet', accel: 'auto' } });
    expect(dom('name = "v"\ntype = "hvm"\nkernel = "/k"\ncmdline = "console=ttyS0"\naccel = "tcg"').vm).toEqual({ kernel: '/k', ramdisk: undefined, cmdline: 'console=ttyS0', accel: 'tcg', cpu: 'qemu64' });
    expect(dom('name = "v"\ntype = "hvm"\nkernel = "/k"\ncpu = "Westmere-v1"').vm?.cpu).toBe('Westmere-v1');
    expect(dom('name = "v"\ntype = "hvm"\nkernel = "/k"\ncpu = "baseline"').vm?.cpu).toBe('baseline');
    expect(dom('name = "g"').vm).toBeUndefined();
  });

  it('gives the documented memory message', () => {
    const e = configError(() => dom('# guest\nname = "guest1"\n\n\n\n\nmemory = "lots"'));
    expect(e.message).toBe(`${F}:7: key 'memory': expected a number of MiB, got "lots"; write e.g. memory = 256`);
    expect(e).toMatchObject({ file: F, line: 7, key: 'memory' });
  });

  const bad: [string, number, string, RegExp][] = [
    ['memory = 256', 1, 'name', /missing name; every domain needs one/],
    ['name = "a b"', 1, 'name', /"a b" is not a valid domain name/],
    [`name = "${'a'.repeat(64)}"`, 1, 'name', /not a valid domain name/],
    ['name = ".."', 1, 'name', /not a valid domain name/],
    ['name = "Domain-0"', 1, 'name', /reserved/],
    ['name = 5', 1, 'name', /expected a quoted string, got 5; write e.g. name = "guest1"/],
    ['name = "g"\nmemroy = 5', 2, 'memroy', /unknown setting in a domain config; did you mean 'memory'\? \(known: name, memory/],
    ['name = "g"\nkernal = "/boot/vmlinuz"', 2, 'kernal', /unknown setting in a domain config; did you mean 'kernel'/],
    ['name = "g"\nkernel = "/boot/vmlinuz"', 2, 'kernel', /kernel applies only to type = "hvm" guests; add type = "hvm"/],
    ['name = "g"\naccel = "kvm"', 2, 'accel', /accel applies only to type = "hvm"/],
    ['name = "g"\nmemory = 0', 2, 'memory', /0 is out of range: expected a number of MiB from 1 to 65536/],
    ['name = "g"\nmemory = 0xffffffffffffffff', 2, 'memory', /out of range/],
    ['name = "g"\nmemory = [1]', 2, 'memory', /got a list of 1/],
    ['name = "g"\nvcpus = 1000', 2, 'vcpus', /out of range/],
    ['name = "g"\ndriver_domain = 2', 2, 'driver_domain', /expected 0 or 1, got 2; write driver_domain = 1/],
    ['name = "g"\nrole = "blk"', 2, 'role', /role applies only to driver domains/],
    ['name = "g"\ndriver_domain = 1\nrole = "gpu"', 3, 'role', /"gpu" is not one of "blk", "net"/],
    ['name = "g"\ntype = "hvm"', 2, 'type', /an hvm guest needs kernel = /],
    ['name = "g"\ntype = "hvm"\ndriver_domain = 1\nkernel = "k"', 3, 'driver_domain', /a driver domain cannot be an hvm guest/],
    ['name = "g"\ntype = "hvm"\nkernel = "k"\nvif = [ "backend=n, netns=rs-x" ]', 4, 'vif', /netns applies to Xen-ABI guests/],
    ['name = "g"\ntype = "hvm"\nkernel = "k"\nvif = [ "backend=n, queues=2" ]', 4, 'vif', /one queue pair so far/],
    ['name = "g"\ntype = "hvm"\nkernel = "k"\ncmdline = "a"\nextra = "b"', 5, 'extra', /cmdline and root\/extra both set/],
    ['name = "g"\ntype = "hvm"\nkernel = "k"\ncmdline = "a\tb"', 4, 'cmdline', /control character/],
    [`name = "g"\ntype = "hvm"\nkernel = "k"\nextra = "${'x'.repeat(3000)}"`, 4, 'extra', /3000 characters, more than 2048/],
    ['name = "g"\ntype = "hvm"\nkernel = "k"\naccel = "xen"', 4, 'accel', /"xen" is not one of "kvm", "tcg", "auto"/],
    ['name = "g"\ntype = "hvm"\nkernel = ""', 3, 'kernel', /kernel must name a file/],
    ['name = "g"\ntype = "hvm"\nkernel = "k"\ncpu = "host"', 4, 'cpu', /"host" is whatever CPU the host has, which no other host can be checked against/],
    ['name = "g"\ntype = "hvm"\nkernel = "k"\ncpu = "max"', 4, 'cpu', /"max" is whatever CPU/],
    ['name = "g"\ntype = "hvm"\nkernel = "k"\ncpu = "Westmere,+aes"', 4, 'cpu', /"Westmere,\+aes" is not a CPU model name/],
    ['name = "g"\ncpu = "Westmere"', 2, 'cpu', /cpu applies only to type = "hvm"/],
    ['name = "g"\nstorage = [ "/srv" ]', 2, 'storage', /storage applies only to blk driver domains/],
    ['name = "g"\ndriver_domain = 1\nrole = "net"\nstorage = [ "/srv" ]', 4, 'storage', /storage applies only to blk driver domains/],
    ['name = "g"\non_crash = "coredump-restart"', 2, 'on_crash', /not one of "restart", "destroy", "preserve"/],
    ['name = "g"\non_crash = "restrat"', 2, 'on_crash', /did you mean "restart"\?/],
    ['name = "g"\ndisk = "backend=b, vdev=xvda, target=x"', 2, 'disk', /expected a list, got "backend=b/],
    ['name = "g"\ndisk = [ 5 ]', 2, 'disk', /expected a quoted string, got 5/],
    ['name = "g"\npci = [ "01:00.0" ]', 2, 'pci', /PCI devices can be assigned only to driver domains/],
    ['name = "g"\nuplink = "tap:x"', 2, 'uplink', /uplink applies only to net driver domains/],
    ['name = "g"\ndriver_domain = 1\nuplink = "eth0"', 3, 'uplink', /is not an uplink; write uplink = "tap:NAME"/],
    ['name = "g"\ndriver_domain = 1\nuplink = "tap:way-too-long-name"', 3, 'uplink', /not a valid interface name/],
    ['name = "g"\nrdm = "strategy=all"', 2, 'rdm', /strategy="all"/],
    [`name = "g"\ndisk = [\n${Array.from({ length: 10_000 }, () => '"x",').join('\n')}\n]`, 2, 'disk', /10000 entries; at most 256/],
    ['name = "g"\nvif = [\n "backend=n",\n "backend=n, mac=zz"\n]', 4, 'vif', /is not a MAC address/],
  ];
  for (const [src, line, key, re] of bad) {
    it(`refuses ${JSON.stringify(src.slice(0, 50))}`, () => {
      const e = configError(() => dom(src));
      expect(e).toMatchObject({ file: F, line, key });
      expect(e.message.startsWith(`${F}:${line}: key '${key}`)).toBe(true);
      expect(e.message).toMatch(re);
    });
  }
});
