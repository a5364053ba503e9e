import { describe, expect, it } from 'vitest';
import { renderInit, VM_CMDLINE, VM_MODULES, VM_READY_LINE } from './init.js';
import { elfSection, loadOrder, moduleDepends, moduleName } from './kmod.js';
import { downloadFailedMessage, findTool, missingToolMessage, parseAptDepends, parseAptVersion, parseLdd, VmImageError } from './host.js';
import { imageKey } from './image.js';

/** A minimal ELF64 LE file with the named sections (enough for elfSection/moduleDepends). */
function elf(sections: Record<string, string>): Uint8Array {
  const names = ['', ...Object.keys(sections), '.shstrtab'];
  const shstr = names.map((n) => n + '\0').join('');
  const bodies = [...Object.values(sections), shstr].map((s) => Buffer.from(s));
  let off = 64;
  const offsets = bodies.map((b) => ((off += b.length), off - b.length));
  const shoff = off;
  const shnum = names.length;
  const out = Buffer.alloc(shoff + shnum * 64);
  out.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1], 0);
  out.writeBigUInt64LE(BigInt(shoff), 0x28);
  out.writeUInt16LE(64, 0x3a);
  out.writeUInt16LE(shnum, 0x3c);
  out.writeUInt16LE(shnum - 1, 0x3e);
  bodies.forEach((b, i) => out.set(b, offsets[i]));
  let nameOff = 1;
  for (let i = 1; i < shnum; i++) {
    const h = shoff + i * 64;
    out.writeUInt32LE(nameOff, h);
    nameOff += names[i].length + 1;
    out.writeBigUInt64LE(BigInt(offsets[i - 1]), h + 0x18);
    out.writeBigUInt64LE(BigInt(bodies[i - 1].length), h + 0x20);
  }
  return out;
}

describe('guest /init', () => {
  const init = renderInit(['virtio_ring', 'virtio']);
  it('mounts the pseudo filesystems, loads the modules in the order given, prints the ready line, respawns the shell', () => {
    expect(init.startsWith('#!/bin/busybox sh\n')).toBe(true);
    expect(init).toContain('/bin/busybox --install -s');
    for (const fs of ['proc proc /proc', 'sysfs sysfs /sys', 'devtmpfs devtmpfs /dev']) expect(init).toContain(`mount -t ${fs}`);
    expect(init).toContain('for m in virtio_ring virtio; do');
    expect(init).toContain('ip link set lo up');
    expect(init.indexOf(`echo "${VM_READY_LINE}"`)).toBeGreaterThan(init.indexOf('insmod'));
    expect(init).toMatch(/while :; do\n\s+setsid sh -c 'exec sh -i <\/dev\/ttyS0 >\/dev\/ttyS0 2>&1'/);
  });
  it('refuses module names that would be shell syntax', () => {
    expect(() => renderInit(['virtio; rm -rf /'])).toThrow(/not a kernel module name/);
    expect(() => renderInit(['$(reboot)'])).toThrow(/not a kernel module name/);
  });
  it('boots with the serial console and no reboot loop', () => {
    expect(VM_CMDLINE).toBe('console=ttyS0 panic=-1 quiet');
  });
});

describe('kernel modules', () => {
  it('names modules as the kernel does', () => {
    expect(moduleName('/x/kernel/drivers/char/hw_random/virtio-rng.ko.xz')).toBe('virtio_rng');
    expect(moduleName('virtio_blk.ko')).toBe('virtio_blk');
  });
  it('reads depends= from the .modinfo section', () => {
    const ko = elf({ '.text': 'code', '.modinfo': 'license=GPL\0depends=virtio_ring,virtio\0vermagic=6.1\0' });
    expect(moduleDepends(ko)).toEqual(['virtio_ring', 'virtio']);
    expect(moduleDepends(elf({ '.modinfo': 'depends=\0license=GPL\0' }))).toEqual([]);
  });
  it('refuses files that are not modules, and section tables outside the file', () => {
    expect(() => moduleDepends(Buffer.from('not an elf at all, just some text padding it out to 64 bytes......'))).toThrow(/no ELF magic/);
    expect(() => moduleDepends(elf({ '.text': 'x' }))).toThrow(/no .modinfo section/);
    const cut = elf({ '.modinfo': 'depends=\0' });
    expect(() => elfSection(cut.subarray(0, cut.length - 10), '.modinfo')).toThrow(/outside the file/);
  });
  // The real depends= of Debian's 6.1 cloud kernel: virtio needs virtio_ring.
  const deb61: Record<string, string[]> = {
    virtio_ring: [],
    virtio: ['virtio_ring'],
    virtio_pci_modern_dev: [],
    virtio_pci_legacy_dev: [],
    virtio_pci: ['virtio_ring', 'virtio_pci_modern_dev', 'virtio_pci_legacy_dev', 'virtio'],
    virtio_blk: ['virtio', 'virtio_ring'],
    failover: [],
    net_failover: ['failover'],
    virtio_net: ['virtio_ring', 'virtio', 'net_failover'],
  };
  it('orders modules after their dependencies', () => {
    expect(loadOrder(VM_MODULES, (m) => deb61[m])).toEqual([
      'virtio_ring',
      'virtio',
      'virtio_pci_modern_dev',
      'virtio_pci_legacy_dev',
      'virtio_pci',
      'virtio_blk',
      'failover',
      'net_failover',
      'virtio_net',
    ]);
  });
  it('names a missing module, a missing dependency and a cycle', () => {
    expect(() => loadOrder(['virtio_blk'], () => undefined)).toThrow('the kernel package has no module virtio_blk');
    expect(() => loadOrder(['virtio_blk'], (m) => (m === 'virtio_blk' ? ['virtio'] : undefined))).toThrow('virtio_blk depends on virtio, which the kernel package does not have');
    expect(() => loadOrder(['a'], (m) => (m === 'a' ? ['b'] : ['a']))).toThrow('cycle: a -> b -> a');
  });
});

describe('host tools', () => {
  it('names the Debian package of a missing tool', () => {
    expect(() => findTool('busybox', '/nonexistent-dir')).toThrow(VmImageError);
    expect(() => findTool('busybox', '/nonexistent-dir')).toThrow('apt-get install -y busybox-static');
    expect(missingToolMessage('fio')).toContain('apt-get install -y fio');
    expect(missingToolMessage('dpkg')).toContain('apt-get install -y dpkg');
  });
  it('reads ldd: resolved libraries and the loader, no vDSO, static programs, missing libraries', () => {
    const out = `\tlinux-vdso.so.1 (0x00007ffd)
\tlibnuma.so.1 => /lib/x86_64-linux-gnu/libnuma.so.1 (0x00007efdf1f64000)
\tlibceph-common.so.2 => /usr/lib/x86_64-linux-gnu/ceph/libceph-common.so.2 (0x00007efde7a00000)
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007efdf0e1e000)
\t/lib64/ld-linux-x86-64.so.2 (0x00007efdf1f85000)
\tlibnuma.so.1 => /lib/x86_64-linux-gnu/libnuma.so.1 (0x00007efdf1f64000)
`;
    expect(parseLdd(out, '/usr/bin/fio')).toEqual([
      '/lib/x86_64-linux-gnu/libnuma.so.1',
      '/usr/lib/x86_64-linux-gnu/ceph/libceph-common.so.2',
      '/lib/x86_64-linux-gnu/libc.so.6',
      '/lib64/ld-linux-x86-64.so.2',
    ]);
    expect(parseLdd('\tnot a dynamic executable\n', '/usr/bin/busybox')).toBeUndefined();
    expect(() => parseLdd('\tlibgone.so.1 => not found\n', '/usr/bin/fio')).toThrow('/usr/bin/fio needs libgone.so.1');
    expect(() => parseLdd('garbage', '/usr/bin/fio')).toThrow(/could not read ldd's answer/);
  });
  it('reads apt: the newest kernel the metapackage points at, and its version', () => {
    const deps = 'linux-image-cloud-amd64\n  Depends: linux-image-6.1.0-9-cloud-amd64\n  Depends: linux-image-6.1.0-57-cloud-amd64\n  Recommends: foo\n';
    expect(parseAptDepends(deps, 'linux-image-')).toBe('linux-image-6.1.0-57-cloud-amd64');
    expect(parseAptDepends('N: Unable to locate package x\n', 'linux-image-')).toBeUndefined();
    expect(parseAptVersion('Package: linux-image-6.1.0-57-cloud-amd64\nVersion: 6.1.192-3\nArchitecture: amd64\n')).toBe('6.1.192-3');
  });
  it('turns a failed download into advice about the mirror', () => {
    const m = downloadFailedMessage('linux-image-6.1.0-57-cloud-amd64', 'Ign:1 http://deb.debian.org\nErr:1 http://deb.debian.org/debian bookworm/main\n  Could not connect\nE: Failed to fetch x\n');
    expect(m).toContain('could not download linux-image-6.1.0-57-cloud-amd64 from the Debian mirror');
    expect(m).toContain('Err:1 http://deb.debian.org/debian bookworm/main; E: Failed to fetch x');
    expect(m).toContain('apt-get update');
  });
});

describe('cache key', () => {
  const base = {
    kernelPackage: 'linux-image-6.1.0-57-cloud-amd64',
    kernelVersion: '6.1.192-3',
    busyboxVersion: '1:1.35.0-4',
    programs: [{ path: '/usr/bin/fio', version: '3.33-3', libs: [{ path: '/lib/x86_64-linux-gnu/libc.so.6', size: 1, mtimeMs: 2 }] }],
    init: renderInit(VM_MODULES),
    modules: VM_MODULES,
    cmdline: VM_CMDLINE,
  };
  it('is stable for the same inputs and changes with each of them', () => {
    const k = imageKey(base);
    expect(imageKey({ ...base })).toBe(k);
    expect(k).toMatch(/^[0-9a-f]{32}$/);
    const variants = [
      { ...base, kernelVersion: '6.1.192-4' },
      { ...base, kernelPackage: 'linux-image-6.1.0-58-cloud-amd64' },
      { ...base, busyboxVersion: '1:1.36' },
      { ...base, init: base.init + '# changed\n' },
      { ...base, cmdline: 'console=ttyS0' },
      { ...base, programs: [{ ...base.programs[0], libs: [{ ...base.programs[0].libs[0], mtimeMs: 3 }] }] },
    ];
    for (const v of variants) expect(imageKey(v)).not.toBe(k);
  });
});
