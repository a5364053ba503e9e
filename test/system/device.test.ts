// The block and network paths with emulated PCI devices and the IOMMU in them (issue 5): the
// guest's disk is an NVMe controller that blkdom drives, every DMA translated by the VT-d model;
// netdom's uplink is a NIC whose wire is a host TAP, so host <-> guest traffic crosses the NIC's
// descriptor rings. Checked with qemu-io, fio, ping and iperf3, and against the medium file itself.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, openSync, readSync, closeSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requireBuilt } from '../support/platform.js';
import { iperf3 } from '../../src/netns/iperf3.js';
import { SystemUnderTest, allConnected, deviceStates, run, sleep } from './support.js';

const pid = process.pid;
const why = process.getuid?.() !== 0 ? 'not running as root (TAP devices and network namespaces need CAP_NET_ADMIN)' : !existsSync('/dev/net/tun') ? 'no /dev/net/tun in this kernel/container' : null;
if (why) console.warn(`skipping the device-path test: ${why}`);

const NSG = `rsd${pid}g`;
const NSH = `rsd${pid}h`;
const TAP = `rsn${pid % 100000}`;
const SUBNET = `10.${150 + (pid % 40)}.${(pid >> 6) % 250}`;
const mac = `00:16:3e:${((pid >> 8) & 0x7f).toString(16).padStart(2, '0')}:${(pid & 0xff).toString(16).padStart(2, '0')}:0a`;
const medium = (dir: string) => join(dir, 'nvme0.img');

describe.skipIf(why !== null)('device path: NVMe and NIC behind the IOMMU', () => {
  requireBuilt();
  const media = mkdtempSync(join(tmpdir(), 'rs-dev-media-'));
  const s = new SystemUnderTest('rs-dev-', {
    'host.cfg': `iommu = "vtd"\ndevices = [\n  "bdf=00:01.0, type=root-port, acs=1",\n  "bdf=00:02.0, type=root-port, acs=1",\n  "bdf=01:00.0, type=nvme, parent=00:01.0, medium=${medium(media)}, size=64M",\n  "bdf=02:00.0, type=nic, parent=00:02.0, wire=tap:${TAP}",\n]\n`,
    'devblk.cfg': `name = "devblk"\nmemory = 128\ndriver_domain = 1\nrole = "blk"\npci = [ "01:00.0" ]\npci_seize = 1\n`,
    'devnet.cfg': `name = "devnet"\nmemory = 128\ndriver_domain = 1\nrole = "net"\npci = [ "02:00.0" ]\npci_seize = 1\n`,
    'devg.cfg': `name = "devg"\nmemory = 256\ndisk = [ 'backend=devblk, vdev=xvda, target=pci:01:00.0, access=rw' ]\nvif = [ 'backend=devnet, mac=${mac}, ip=${SUBNET}.1/24, netns=${NSG}' ]\n`,
  });
  const uri = () => `nbd+unix:///xvda?socket=${join(s.state, 'nbd', 'devg-xvda.sock')}`;

  beforeAll(async () => {
    await s.up();
    const r = await s.waitList(allConnected, 20_000);
    if (!r.ok) throw new Error(`devices did not connect: ${deviceStates(r.rows)}\n${s.logTail()}`);
  }, 60_000);

  afterAll(async () => {
    await s.teardown();
    await run('ip', ['netns', 'del', NSH]);
    rmSync(media, { recursive: true, force: true });
  }, 60_000);

  it('qemu-io data goes through the NVMe controller into its medium', async () => {
    const w = await run('qemu-io', ['-f', 'raw', uri(), '-c', 'write -P 0x5c 1M 1M', '-c', 'read -P 0x5c 1M 1M']);
    expect(w.code, w.stderr + w.stdout).toBe(0);
    expect(w.stdout).not.toMatch(/Pattern verification failed/);
    // The bytes are on the controller's medium, at the same offset.
    const fd = openSync(medium(media), 'r');
    const buf = Buffer.alloc(4096);
    readSync(fd, buf, 0, 4096, 1 << 20);
    closeSync(fd);
    expect(buf.every((b) => b === 0x5c)).toBe(true);
    expect(s.log()).toMatch(/pci: 0000:01:00\.0 assigned to domain \d+/);
  });

  it('fio random writes verify clean over NBD -> blkif -> NVMe -> IOMMU', async () => {
    const cwd = mkdtempSync(join(tmpdir(), 'rs-dev-fio-'));
    try {
      const r = await run('fio', ['--name=dev', '--ioengine=nbd', `--uri=${uri()}`, '--rw=randwrite', '--bs=4k', '--iodepth=32', '--size=16M', '--verify=crc32c', '--verify_state_save=0', '--output-format=terse'], { cwd, timeoutMs: 90_000 });
      expect(r.code, r.stderr).toBe(0);
      const f = r.stdout.trim().split('\n').pop()!.split(';');
      expect(f[4]).toBe('0'); // fio's total error count in the terse line
    } finally {
      rmSync(cwd, { recursive: true, force: true });
    }
  });

  it('host <-> guest traffic crosses the NIC: ping and iperf3', async () => {
    // hv created the NIC's host TAP; put it in a namespace of ours on the guest's subnet.
    expect((await run('ip', ['netns', 'add', NSH])).code).toBe(0);
    expect((await run('ip', ['link', 'set', TAP, 'netns', NSH])).code).toBe(0);
    await run('ip', ['-n', NSH, 'addr', 'add', `${SUBNET}.9/24`, 'dev', TAP]);
    await run('ip', ['-n', NSH, 'link', 'set', TAP, 'up']);
    await run('ip', ['-n', NSH, 'link', 'set', 'lo', 'up']);
    let ping = await run('ip', ['netns', 'exec', NSH, 'ping', '-c', '3', '-i', '0.2', '-W', '2', `${SUBNET}.1`]);
    for (let i = 0; i < 10 && ping.code !== 0; i++) {
      await sleep(300);
      ping = await run('ip', ['netns', 'exec', NSH, 'ping', '-c', '3', '-i', '0.2', '-W', '2', `${SUBNET}.1`]);
    }
    expect(ping.code, ping.stdout + ping.stderr + s.logTail()).toBe(0);
    const port = 5301 + (pid % 500);
    const r = await iperf3({ ns: NSH }, { ns: NSG, ip: `${SUBNET}.1` }, { seconds: 2, port });
    expect(r.bytes).toBeGreaterThan(0);
  });

  it('all that traffic raised no IOMMU fault and the devices stayed with their domains', async () => {
    expect(s.log()).not.toMatch(/hv: IOMMU fault/);
    const r = await s.cli(['pci', 'assignable-list']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).not.toMatch(/01:00\.0|02:00\.0/);
  });

  it('ringside pci list --state shows the live owners and fault counts; pci faults shows none', async () => {
    const l = await s.cli(['pci', 'list', '--json']);
    expect(l.code, l.stderr).toBe(0);
    const rows = JSON.parse(l.stdout) as { bdf: string; owner: string; faults: number }[];
    const row = (b: string) => rows.find((r) => r.bdf === b);
    expect(row('0000:01:00.0')).toMatchObject({ owner: 'domain 2', faults: 0 });
    expect(row('0000:02:00.0')).toMatchObject({ owner: 'domain 3', faults: 0 });
    const f = await s.cli(['pci', 'faults']);
    expect(f.code, f.stderr).toBe(0);
    expect(f.stdout.trim()).toBe('no IOMMU faults recorded');
  });
});
