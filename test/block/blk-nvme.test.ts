// A guest disk served by blkback on an NVMe controller passed through to the driver domain, on a
// real hv: blkback maps the frontend's grants with GNTMAP_device_map and the controller DMAs
// straight into the guest's frames through the VT-d model. Real tools over NBD; the copy counters
// of blkback and of the NVMe driver say whether any byte went through a bounce buffer.
import { ensureMedium } from '../../domains/dom0/images.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closeSync, openSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { hostConfig, hostDev } from '../../iommu/platform/host-builder.js';
import { toPlatformInit } from '../../src/hypercall/pci.js';
import type { BlkbackQueueStats } from '../../src/blkback/queue.js';
import { BlockSystem, type Guest, type TestDomain } from './support/system.js';
import { fioVerify, qemuIo, run, nbdUri } from './support/tools.js';

const MiB = 1 << 20;

interface Status {
  stats: BlkbackQueueStats[];
  device: { commands: number; errors: number; dmaBytes: number; bounceBytes: number } | null;
}

function mediumBytes(path: string, pos: number, len: number): Buffer {
  const fd = openSync(path, 'r');
  try {
    const b = Buffer.alloc(len);
    readSync(fd, b, 0, len, pos);
    return b;
  } finally {
    closeSync(fd);
  }
}

describe('blkback on an NVMe controller behind the IOMMU: zero copy', () => {
  let s: BlockSystem;
  let blkdom: TestDomain;
  let g: Guest;
  let media: string[];

  beforeAll(async () => {
    s = new BlockSystem();
    media = [join(s.dir, 'nvme0.img'), join(s.dir, 'nvme1.img')];
    const n0 = hostDev('01:00.0', 'nvme', { parent: '00:01.0' });
    n0.medium = media[0];
    n0.sizeBytes = 64 * MiB;
    const n1 = hostDev('02:00.0', 'nvme', { parent: '00:02.0' });
    n1.medium = media[1];
    n1.sizeBytes = 8 * MiB;
    const host = hostConfig([hostDev('00:01.0', 'root-port'), n0, hostDev('00:02.0', 'root-port'), n1]);
    for (const n of [n0, n1]) ensureMedium(n); // what dom0 does: hw runs confined to existing media
    await s.t.dom0.call('platform_init', toPlatformInit(host));
    // two NVMe drivers of 546 frames each
    blkdom = await s.domain('blkback-test', 'blkdom', 1200, 1);
    for (const bdf of ['01:00.0', '02:00.0']) await s.t.dom0.call('pci_assignable_add', { bdf });
    await s.t.dom0.call('pci_assign', { domid: blkdom.domid, devices: [{ bdf: '01:00.0' }, { bdf: '02:00.0' }] });
    g = await s.guest('guest1', blkdom, 'pci:01:00.0');
  }, 60_000);
  afterAll(async () => s?.close());

  it('qemu-io and fio move their data with the device, not through bounce buffers', async () => {
    const q = await qemuIo(g.socket, ['write -P 0x5c 1M 1M', 'read -P 0x5c 1M 1M', 'write -P 0x3a 5M 12k', 'read -P 0x3a 5M 12k', 'flush']);
    expect(q.code, q.stdout + q.stderr).toBe(0);
    expect(q.stdout).not.toMatch(/verification failed/i);
    // the bytes are on the controller's medium, at the same offsets
    expect(mediumBytes(media[0], MiB, MiB).every((b) => b === 0x5c)).toBe(true);
    expect(mediumBytes(media[0], 5 * MiB, 12 * 1024).every((b) => b === 0x3a)).toBe(true);

    const f = await fioVerify(g.socket, { bs: '4k', size: '16M', offset: '16M', iodepth: 32 });
    expect(f.code, f.output).toBe(0);
    expect(f.errors).toBe(0);
    // 1 MiB reads: indirect requests of 256 segments, several NVMe commands each
    const seq = await run('fio', ['--name=seq', '--ioengine=nbd', `--uri=${nbdUri(g.socket)}`, '--rw=read', '--bs=1M', '--size=16M', '--iodepth=4', '--output-format=terse']);
    expect(seq.code, seq.stderr).toBe(0);

    const st = await blkdom.ctl.cmd<Status>('status', { id: g.vbdId });
    const q0 = st.stats[0];
    expect(q0.errors).toBe(0);
    // fio wrote 16 MiB and read it back for verification, plus qemu-io and the 16 MiB sequential read
    expect(q0.dmaBytes).toBeGreaterThan(48 * MiB);
    expect(q0.bounceBytes).toBe(0);
    expect(st.device!.bounceBytes).toBe(0);
    expect(st.device!.dmaBytes).toBe(q0.dmaBytes);
    expect(q0.persistentGrants).toBeGreaterThan(0);
    expect(s.t.hv.pci!.faults).toEqual([]);
  });

  it('a WRITE maps its grants read-only: a device write into them faults, the request fails, the vbd lives on', async () => {
    // transient grants (no feature-persistent), and a driver that turns the WRITE into a device write
    const g2 = await s.guest('guest2', blkdom, 'pci:02:00.0', { features: { persistent: false }, open: { swapDirections: true } });
    const faultsBefore = s.t.hv.pci!.faults.length;
    const w = await qemuIo(g2.socket, ['write -P 0x66 0 4k']);
    // the guest sees its write fail with EIO: blkback answered BLKIF_RSP_ERROR
    expect(w.stdout + w.stderr).toMatch(/write failed: Input\/output error/);
    // hv's VT-d recorded exactly one fault: a device write (reason 5: no write permission) into
    // the page of that guest's read-only device_map grant, at the grant's bus address
    const faults = s.t.hv.pci!.faults.slice(faultsBefore);
    expect(faults).toHaveLength(1);
    const fault = faults[0];
    expect(fault).toMatchObject({ bdf: '0000:02:00.0', domid: blkdom.domid, write: true, reason: 5 });
    expect(fault.grant?.grantor).toBe(g2.domid);
    expect(fault.grant?.iova).toBe(fault.iova - (fault.iova % 4096));
    // the driver's command failed with the controller's "data transfer error" carrying that reason
    expect(s.logs(/blkback .*: id \d+ write: write of \[0, \+8\) failed: nvme@02:00\.0: data transfer error \(DMA fault reason 0x5\)/)).toHaveLength(1);
    // nothing reached the medium
    expect(mediumBytes(media[1], 0, 4096).every((b) => b === 0)).toBe(true);
    const st = await blkdom.ctl.cmd<Status>('status', { id: g2.vbdId });
    // one BLKIF_RSP_ERROR (an EOPNOTSUPP would count as unsupported), through a transient map
    expect(st.stats[0]).toMatchObject({ errors: 1, unsupported: 0, persistentGrants: 0 });
    expect(st.stats[0].transientMaps).toBeGreaterThan(0);
    // a read (the device writes a writable mapping) is fine
    const r = await qemuIo(g2.socket, ['read -P 0 64k 4k']);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).not.toMatch(/verification failed/i);
  });
});
