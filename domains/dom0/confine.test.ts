import { describe, expect, it } from 'vitest';
import { loadSystemFromFiles } from '../../src/config/system.js';
import { confineFor } from './confine.js';

describe('confineFor: what the toolstack lets a driver domain open', () => {
  const sys = loadSystemFromFiles(
    {
      'host.cfg': 'devices = [ "bdf=00:01.0, type=root-port, acs=1", "bdf=01:00.0, type=nvme, parent=00:01.0, medium=/srv/nvme.img, size=1M" ]\n',
      'blk.cfg': 'name = "blk"\ndriver_domain = 1\nrole = "blk"\npci = [ "01:00.0" ]\n',
      'blk2.cfg': 'name = "blk2"\ndriver_domain = 1\nrole = "blk"\n',
      'net.cfg': 'name = "net"\ndriver_domain = 1\nrole = "net"\nuplink = "tap:rs-up9"\n',
      'g1.cfg': `name = "g1"\ndisk = [ 'backend=blk, vdev=xvda, target=/srv/g1.img, access=rw', 'backend=blk, vdev=xvdb, target=/srv/iso.img, access=ro', 'backend=blk, vdev=xvdc, target=pci:01:00.0' ]\n`,
      'g2.cfg': `name = "g2"\ndisk = [ 'backend=blk, vdev=xvda, target=/srv/iso.img, access=ro', 'backend=blk2, vdev=xvdb, target=/srv/other.img' ]\n`,
    },
    '/sys-dir',
  );
  const dom = (n: string) => sys.domains.find((d) => d.name === n)!;

  it('gives a block domain exactly the images it serves, read-only where every user is mode=r', () => {
    expect(confineFor(dom('blk'), sys)).toEqual({ ro: ['/srv/iso.img'], rw: ['/srv/g1.img'], netAdmin: false });
    expect(confineFor(dom('blk2'), sys)).toEqual({ ro: [], rw: ['/srv/other.img'], netAdmin: false });
  });

  it('gives a net domain with a TAP uplink the tun device and CAP_NET_ADMIN, and no files', () => {
    expect(confineFor(dom('net'), sys)).toEqual({ ro: [], rw: ['/dev/net/tun'], netAdmin: true });
  });
});
