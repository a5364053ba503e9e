import { describe, expect, it } from 'vitest';
import { parseDisk } from './disk-spec.js';
import { parseVdev } from './vdev.js';
import { configError } from './testing/expect-error.js';
import type { ErrorWhere } from './errors.js';

const W: ErrorWhere = { file: 'sys/guest1.cfg', line: 9, column: 10, key: 'disk', index: 1 };
const disk = (s: string) => parseDisk(s, W, '/srv/sys');

describe('vdev numbers (xen-vbd-interface)', () => {
  const cases: [string, number][] = [
    ['xvda', 51712],
    ['xvdb', (202 << 8) | (1 << 4)],
    ['xvda1', 51713],
    ['xvdp15', (202 << 8) | (15 << 4) | 15],
    ['xvdq', (1 << 28) | (16 << 8)],
    ['xvda16', (1 << 28) | 16],
    ['xvdaa', (1 << 28) | (26 << 8)],
    ['xvdaa3', (1 << 28) | (26 << 8) | 3],
    ['d0p1', 51713],
    ['d20', (1 << 28) | (20 << 8)],
    ['sda', 8 << 8],
    ['sdb2', (8 << 8) | (1 << 4) | 2],
    ['hda', 3 << 8],
    ['hdb', (3 << 8) | 64],
    ['hdc1', (22 << 8) | 1],
    ['hdd', (22 << 8) | 64],
  ];
  for (const [name, id] of cases) {
    it(`${name} = ${id}`, () => expect(parseVdev(name)).toMatchObject({ name, devid: id }));
  }
  for (const bad of ['xvd', 'xvda0', 'xvda01', 'xvda256', 'xvdA', 'vda', 'sdq', 'sda16', 'hde', 'hda64', 'd01', 'd1p0', 'xvdzzzzzz', '', 'xvda\0']) {
    it(`refuses ${JSON.stringify(bad)}`, () => expect(typeof parseVdev(bad)).toBe('string'));
  }
});

describe('disk spec', () => {
  it('parses the keyword form and resolves a relative target', () => {
    expect(disk('backend=blkdom, vdev=xvda, target=guest1.img, format=raw, access=rw, size=64M')).toMatchObject({
      backend: 'blkdom',
      vdev: 'xvda',
      devid: 51712,
      target: '/srv/sys/guest1.img',
      targetAsWritten: 'guest1.img',
      format: 'raw',
      access: 'w',
      sizeBytes: 64 << 20,
      discard: true,
      where: W,
    });
  });

  it('keeps an absolute target, read-only access and no-discard', () => {
    expect(disk('backend=b, vdev=xvdb, access=ro, no-discard, target=/data/x.img')).toMatchObject({ target: '/data/x.img', access: 'r', discard: false });
    expect(disk('backend=b,vdev=xvdb,access=r,target=x')).toMatchObject({ access: 'r' });
  });

  it('accepts xl positional forms', () => {
    expect(disk('img.raw,raw,xvdb,ro, backend=b')).toMatchObject({ target: '/srv/sys/img.raw', vdev: 'xvdb', access: 'r' });
    expect(disk('img.raw,,xvdc, backend=b')).toMatchObject({ vdev: 'xvdc', format: 'raw', access: 'w' });
    expect(disk('backend=b, vdev=xvdd, img.raw')).toMatchObject({ target: '/srv/sys/img.raw' });
    expect(disk('phy:img.raw,xvde,w,backend=b')).toMatchObject({ target: '/srv/sys/img.raw', vdev: 'xvde', access: 'w' });
    expect(disk('backend=b, vdev=xvda, target=tap:aio:/x/y.img')).toMatchObject({ target: '/x/y.img' });
  });

  it('lets target= keep commas that are not disk options', () => {
    expect(disk('backend=b, vdev=xvda, target=/a,b/c.img, access=ro')).toMatchObject({ target: '/a,b/c.img', access: 'r' });
  });

  const bad: [string, RegExp][] = [
    ['vdev=xvda, target=x', /missing backend=; add backend=/],
    ['backend=b, target=x', /missing vdev=/],
    ['backend=b, vdev=xvda', /missing target=/],
    ['backend=b, vdev=xvda, target=x, format=qcow2', /format "qcow2" is not supported; blkdom serves raw images only; convert with: qemu-img convert/],
    ['backend=b, vdev=xvda, target=qcow2:x', /format "qcow2" is not supported/],
    ['backend=b, vdev=xvda, target=x, access=rwx', /access="rwx" is not r, ro, w or rw/],
    ['backend=b, vdev=xvdA, target=x', /vdev "xvdA" is not a virtual disk name/],
    ['backend=b, vdev=xvda, target=x, size=lots', /size: "lots" is not a size/],
    ['backend=b, vdev=xvda, target=x, size=1000', /not a multiple of 512/],
    ['backend=b, vdev=xvda, target=x, size=0', /greater than 0/],
    ['backend=b, vdev=xvda, target=x, size=99999T', /larger than/],
    ['backend=b, vdev=xvda, target=x, sizee=1M', /unknown disk option 'sizee'; did you mean 'size'\?/],
    ['backend=b, vdev=xvda, vdev=xvdb, target=x', /option 'vdev' is given twice/],
    ['backend=b, vdev=xvda, target=x, discard, no-discard', /option 'discard' is given twice/],
    ['a,raw,xvda,rw,extra,backend=b', /too many positional values/],
    ['backend=b, vdev=xvda, target=x, cdrom', /cdrom devices are not supported/],
    ['', /empty disk entry/],
    [`backend=b, vdev=xvda, target=${'x'.repeat(5000)}`, /target path is longer than 4096/],
    [`backend=b, vdev=xvda, target=${'x'.repeat(9000)}`, /more than 8192/],
  ];
  for (const [spec, re] of bad) {
    it(`refuses ${JSON.stringify(spec.slice(0, 60))}`, () => {
      const e = configError(() => disk(spec));
      expect(e.message).toMatch(/^sys\/guest1\.cfg:9: key 'disk\[1\]': /);
      expect(e.message).toMatch(re);
      expect(e).toMatchObject({ file: 'sys/guest1.cfg', line: 9, key: 'disk', index: 1 });
    });
  }
});
