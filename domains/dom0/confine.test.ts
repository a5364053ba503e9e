import { describe, expect, it } from 'vitest';
import { loadSystemFromFiles } from '../../src/config/system.js';
import { confineFor, exportLink, guestExportDir, mayServe } from './confine.js';

describe('confineFor: what the toolstack lets a driver domain open', () => {
  const sys = loadSystemFromFiles(
    {
      'host.cfg': 'devices = [ "bdf=00:01.0, type=root-port, acs=1", "bdf=01:00.0, type=nvme, parent=00:01.0, medium=/srv/nvme.img, size=1M" ]\n',
      'blk.cfg': 'name = "blk"\ndriver_domain = 1\nrole = "blk"\npci = [ "01:00.0" ]\n',
      'blk2.cfg': 'name = "blk2"\ndriver_domain = 1\nrole = "blk"\nstorage = [ "/srv/shared/" ]\n',
      'net.cfg': 'name = "net"\ndriver_domain = 1\nrole = "net"\nuplink = "tap:rs-up9"\n',
      'g1.cfg': `name = "g1"\ndisk = [ 'backend=blk, vdev=xvda, target=/srv/g1.img, access=rw', 'backend=blk, vdev=xvdb, target=/srv/iso.img, access=ro', 'backend=blk, vdev=xvdc, target=pci:01:00.0' ]\n`,
      'g2.cfg': `name = "g2"\ndisk = [ 'backend=blk, vdev=xvda, target=/srv/iso.img, access=ro', 'backend=blk2, vdev=xvdb, target=/srv/other.img' ]\n`,
      'g3.cfg': `name = "g3"\nvif = [ 'backend=net, netns=ns-g3', 'backend=net, netns=ns-g3' ]\n`,
      'g4.cfg': `name = "g4"\nvif = [ 'backend=net' ]\n`,
      'g5.cfg': `name = "g5"\nseccomp = 0\nvif = [ 'backend=net, netns=ns-a', 'backend=net, netns=ns-b' ]\n`,
    },
    '/sys-dir',
  );
  const dom = (n: string) => sys.domains.find((d) => d.name === n)!;
  const NBD = '/state/nbd';

  it('gives a block domain exactly the images it serves, read-only where every user is mode=r', () => {
    expect(confineFor(dom('blk'), sys, NBD)).toEqual({ ro: ['/srv/iso.img'], rw: ['/srv/g1.img'], netAdmin: false });
    expect(confineFor(dom('blk2'), sys, NBD)).toEqual({ ro: [], rw: ['/srv/other.img'], netAdmin: false, rwTrees: ['/srv/shared'] });
  });

  it("says whether a running block domain may open a migrating VM's image: its own targets (read-only ones only for reading), or a file under its storage", () => {
    expect(mayServe(dom('blk'), sys, '/srv/g1.img', 'w')).toBe(true);
    expect(mayServe(dom('blk'), sys, '/srv/iso.img', 'r')).toBe(true);
    expect(mayServe(dom('blk'), sys, '/srv/iso.img', 'w')).toBe(false);
    expect(mayServe(dom('blk'), sys, '/srv/other.img', 'w')).toBe(false);
    expect(mayServe(dom('blk2'), sys, '/srv/shared/vm9.img', 'w')).toBe(true);
    expect(mayServe(dom('blk2'), sys, '/srv/shared', 'w')).toBe(false);
    expect(mayServe(dom('blk2'), sys, '/srv/sharedX/vm9.img', 'w')).toBe(false);
  });

  it('gives a net domain with a TAP uplink the tun device and CAP_NET_ADMIN, and no files', () => {
    expect(confineFor(dom('net'), sys, NBD)).toEqual({ ro: [], rw: ['/dev/net/tun'], netAdmin: true });
  });

  it('gives a guest with disks only its own export directory: no files, no capability, no namespace', () => {
    expect(confineFor(dom('g1'), sys, NBD)).toEqual({ ro: [], rw: [], netAdmin: false, sockDir: '/state/nbd/guest/g1' });
    // g2's disks come from two backends; it still reaches none of their images
    expect(confineFor(dom('g2'), sys, NBD)).toEqual({ ro: [], rw: [], netAdmin: false, sockDir: '/state/nbd/guest/g2' });
  });

  it('gives a guest with vifs the tun device, its one namespace and CAP_NET_ADMIN there', () => {
    expect(confineFor(dom('g3'), sys, NBD)).toEqual({ ro: [], rw: ['/dev/net/tun'], netAdmin: true, sockDir: '/state/nbd/guest/g3', netns: 'ns-g3' });
    // no netns= written: the guest's default namespace, the one dom0 creates
    expect(confineFor(dom('g4'), sys, NBD).netns).toBe('rs-g4');
  });

  it('keeps each guest out of the others\' exports: the directory is per guest, users reach it by a link', () => {
    expect(guestExportDir(NBD, 'g1')).not.toBe(guestExportDir(NBD, 'g2'));
    expect(exportLink(NBD, 'g1', 'xvda')).toEqual({ path: '/state/nbd/g1-xvda.sock', target: 'guest/g1/xvda.sock' });
  });

  it('lets seccomp = 0 keep a guest with vifs in several namespaces (it runs unconfined)', () => {
    expect(dom('g5').seccomp).toBe(false);
    expect(dom('g4').seccomp).toBe(true);
  });
});
