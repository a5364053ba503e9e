// hv outlives its hardware process: when hw dies, hv logs why, every PCI operation that needs the
// hardware fails naming the cause, and the domains (a driver domain owning a device among them)
// keep running and can still be destroyed. And hw goes when the platform does.
import { alive } from '../../src/cli/lifecycle.js';
import { ensureMedium } from '../../domains/dom0/images.js';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hostConfig, hostDev } from '../../iommu/platform/host-builder.js';
import { toPlatformInit } from '../../src/hypercall/pci.js';
import { TestPlatform, type Probe } from '../support/platform.js';
import { until } from '../support/until.js';

function platform(dir: string) {
  const nvme = hostDev('01:00.0', 'nvme', { parent: '00:01.0' });
  nvme.medium = join(dir, 'disk.img');
  nvme.sizeBytes = 1 << 20;
  ensureMedium(nvme); // what dom0 does: hw runs confined to existing media
  return toPlatformInit(hostConfig([hostDev('00:01.0', 'root-port'), nvme]));
}

describe('hv without its hardware', () => {
  let t: TestPlatform;
  let blk: Probe;
  let hwPid: number;

  beforeAll(async () => {
    t = new TestPlatform();
    await t.dom0.call('platform_init', platform(t.dir));
    blk = await t.probe('blkdom', { kind: 'pcidrv', ioFrames: 160 });
    await t.dom0.call('pci_assignable_add', { bdf: '01:00.0' });
    await t.dom0.call('pci_assign', { domid: blk.domid, devices: [{ bdf: '01:00.0' }] });
    hwPid = t.hv.pci!.hw.pid!;
  });
  afterAll(async () => t?.close());

  it('logs the loss, fails PCI operations naming the cause, and keeps the domains running', async () => {
    expect(await blk.cmd('hypercall', { op: 'pci_device_open', args: { bdf: '01:00.0' } })).toMatchObject({ ok: true });
    const opened = await blk.cmd('nvmeOpen', { bdf: '01:00.0' });
    expect(opened, JSON.stringify(opened)).toMatchObject({ ok: true });
    expect(await blk.cmd('nvmeWrite', { seed: 1, len: 4096, pos: 0 })).toMatchObject({ ok: true });
    process.kill(hwPid, 'SIGKILL');
    await until('hv noticing hw is gone', () => t.logs, (l) => l.some((x) => x.includes('the PCI hardware is gone')));
    // once hw has exited, hv makes the owner's page read all-ones: the driver fails at once
    // (surprise removal) instead of waiting on a controller that will never answer
    const w = await blk.cmd('nvmeWrite', { seed: 2, len: 4096, pos: 0 });
    expect(w).toMatchObject({ ok: false, error: expect.stringMatching(/gone|removed|ENODEV/i) });
    expect(t.logs).toContain('hv: the PCI hardware is gone: hw exited (killed by SIGKILL); its devices are unusable, domains keep running');

    const open = await blk.cmd('hypercall', { op: 'pci_device_open', args: { bdf: '01:00.0' } });
    expect(open).toMatchObject({ ok: false, code: 'EIO', error: expect.stringMatching(/PCI hardware is gone \(hw exited \(killed by SIGKILL\)\)/) });
    await expect(t.dom0.call('pci_release', { bdf: '01:00.0' })).rejects.toThrow(/PCI hardware is gone \(hw exited/);
    // hv's own view of the platform stays readable
    expect((await t.dom0.call('pci_list', {})).result.devices.find((d) => d.bdf === '0000:01:00.0')?.domid).toBe(blk.domid);
    const { result: domains } = await t.dom0.call('domain_list', {});
    expect(domains.domains.map((d) => d.name)).toContain('blkdom');

    // the driver domain still runs, and its death is handled without the hardware
    expect((await blk.cmd('hypercall', { op: 'gnttab_query_size', args: {} })).result.nrFrames).toBe(1);
    await t.dom0.call('domain_destroy', { domid: blk.domid });
    await t.waitEvent((e) => e.event === 'domain_died' && e.domid === blk.domid);
    expect((await t.dom0.call('hv_info', {})).result.domains).toBe(1);
    expect(alive(hwPid)).toBe(false);
  });

  it('stops hw when the platform closes', async () => {
    const p = new TestPlatform();
    await p.dom0.call('platform_init', platform(p.dir));
    const pid = p.hv.pci!.hw.pid!;
    expect(alive(pid)).toBe(true);
    await p.close();
    await until('hw exiting', () => alive(pid), (a) => !a);
  });
});
