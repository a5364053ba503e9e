// netdom's uplink NIC with offloads, its wire a host TAP carrying virtio-net headers: a guest's
// TCP super-frames cross netfront, netback, the switch and the NIC's transmit ring whole, and the
// host kernel takes each in one write. Shown from outside: the host TAP counts packets larger than
// any MTU-sized frame (a GSO skb is one packet there), while ping and iperf3 work both ways.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { requireBuilt } from '../support/platform.js';
import { iperf3, type Iperf3Result } from '../../src/netns/iperf3.js';
import { SystemUnderTest, allConnected, deviceStates, netnsNames, run, sleep } from './support.js';

const pid = process.pid;
const why = process.getuid?.() !== 0 ? 'not running as root (TAP devices and network namespaces need CAP_NET_ADMIN)' : !existsSync('/dev/net/tun') ? 'no /dev/net/tun in this kernel/container' : null;
if (why) console.warn(`skipping the NIC offload test: ${why}`);

const NSG = `rso${pid}g`;
const NSH = `rso${pid}h`;
const TAP = `rso${pid % 100000}`;
const SUBNET = `10.${110 + (pid % 40)}.${(pid >> 6) % 250}`;
const GUEST_IP = `${SUBNET}.1`;
const HOST_IP = `${SUBNET}.9`;
const PORT = 6301 + (pid % 500);
const mac = `00:16:3e:${((pid >> 8) & 0x7f).toString(16).padStart(2, '0')}:${(pid & 0xff).toString(16).padStart(2, '0')}:0b`;

const nsRun = (ns: string, cmd: string, args: string[], timeoutMs = 20_000) => run('ip', ['netns', 'exec', ns, cmd, ...args], { timeoutMs });

interface LinkStats {
  rx: { bytes: number; packets: number };
  tx: { bytes: number; packets: number };
}

async function hostTapStats(): Promise<LinkStats> {
  const r = await run('ip', ['-n', NSH, '-s', '-j', 'link', 'show', 'dev', TAP]);
  if (r.code !== 0) throw new Error(`ip -s link show ${TAP}: ${r.stderr}`);
  const [l] = JSON.parse(r.stdout) as { stats64: LinkStats }[];
  return l.stats64;
}

/** iperf3 server (one client) in the host namespace, client in the guest's; `reverse`: host sends. */
const iperf = (reverse: boolean, seconds: number): Promise<Iperf3Result> => iperf3({ ns: NSG }, { ns: NSH, ip: HOST_IP }, { seconds, port: PORT, reverse });

const gbit = (r: Iperf3Result) => (r.bps / 1e9).toFixed(2);

const hostCfg = (extra: string) => `iommu = "vtd"\ndevices = [\n  "bdf=00:02.0, type=root-port, acs=1",\n  "bdf=02:00.0, type=nic, parent=00:02.0, wire=tap:${TAP}${extra}",\n]\n`;

/** hv creates the NIC's host TAP; put it in a namespace of ours, on the guest's subnet. */
async function adoptTap(): Promise<void> {
  if (!(await netnsNames()).includes(NSH)) await run('ip', ['netns', 'add', NSH]);
  const steps = [
    ['link', 'set', TAP, 'netns', NSH],
    ['-n', NSH, 'addr', 'add', `${HOST_IP}/24`, 'dev', TAP],
    ['-n', NSH, 'link', 'set', TAP, 'up'],
    ['-n', NSH, 'link', 'set', 'lo', 'up'],
  ];
  for (const a of steps) {
    const x = await run('ip', a);
    if (x.code !== 0) throw new Error(`ip ${a.join(' ')}: ${x.stderr}`);
  }
}

/** Average bytes per packet the host TAP received during a guest -> host iperf3 run. */
async function bytesPerPacket(seconds: number): Promise<{ per: number; r: Iperf3Result }> {
  const before = await hostTapStats();
  const r = await iperf(false, seconds);
  const after = await hostTapStats();
  return { per: (after.rx.bytes - before.rx.bytes) / (after.rx.packets - before.rx.packets), r };
}

describe.skipIf(why !== null)('NIC offloads over a host TAP with virtio-net headers', () => {
  requireBuilt();
  const s = new SystemUnderTest('rs-nico-', {
    'host.cfg': hostCfg(''),
    'onet.cfg': `name = "onet"\nmemory = 128\ndriver_domain = 1\nrole = "net"\npci = [ "02:00.0" ]\npci_seize = 1\n`,
    'og.cfg': `name = "og"\nmemory = 128\nvif = [ 'backend=onet, mac=${mac}, ip=${GUEST_IP}/24, netns=${NSG}' ]\n`,
  });

  beforeAll(async () => {
    await s.up();
    const r = await s.waitList(allConnected, 20_000);
    if (!r.ok) throw new Error(`devices did not connect: ${deviceStates(r.rows)}\n${s.logTail()}`);
    await adoptTap();
  }, 60_000);

  afterAll(async () => {
    await s.teardown();
    // the TAP goes with hv; the namespaces are ours (the guest's is removed by its domain, if it got that far)
    await run('ip', ['netns', 'del', NSH]);
    await run('ip', ['netns', 'del', NSG]);
  }, 60_000);

  it('netdom drives the NIC with checksum offload and TSO', () => {
    expect(s.log()).toMatch(/netdom: uplink NIC \S*02:00\.0, offloads: tx-csum tso4 tso6 rx-csum/);
  });

  it('ping crosses guest -> netdom -> NIC -> host TAP and back', async () => {
    let ping = await nsRun(NSH, 'ping', ['-c', '3', '-i', '0.2', '-W', '2', GUEST_IP]);
    for (let i = 0; i < 10 && ping.code !== 0; i++) {
      await sleep(300);
      ping = await nsRun(NSH, 'ping', ['-c', '3', '-i', '0.2', '-W', '2', GUEST_IP]);
    }
    expect(ping.code, ping.stdout + ping.stderr + s.logTail()).toBe(0);
    // large pings: IP fragments, whose checksums nobody may touch
    const big = await nsRun(NSG, 'ping', ['-c', '2', '-s', '4000', '-W', '2', HOST_IP]);
    expect(big.code, big.stdout + big.stderr).toBe(0);
  });

  it('iperf3 guest -> host: the host TAP receives TCP super-frames, one write each', async () => {
    const { per, r } = await bytesPerPacket(3);
    expect(r.bytes).toBeGreaterThan(1 << 20);
    // MTU-sized segments average under 1514 bytes; super-frames average far above
    expect(per).toBeGreaterThan(4000);
    console.log(`guest -> host TAP with TSO: ${gbit(r)} Gbit/s, ${Math.round(per)} bytes per packet on the host TAP`);
  }, 40_000);

  it('iperf3 host -> guest works through the NIC receive path', async () => {
    const r = await iperf(true, 2);
    expect(r.bytes).toBeGreaterThan(1 << 20);
    console.log(`host TAP -> guest: ${gbit(r)} Gbit/s`);
  }, 40_000);

  it('no IOMMU fault, and the NIC never stopped', () => {
    expect(s.log()).not.toMatch(/hv: IOMMU fault/);
    expect(s.log()).not.toMatch(/nic: fatal/);
  });

  it('with offloads=0 in host.cfg the NIC offers none and netdom segments in software', async () => {
    const d = await s.down();
    expect(d.code, d.stderr).toBe(0);
    writeFileSync(join(s.sys, 'host.cfg'), hostCfg(', offloads=0'));
    await s.up();
    const l = await s.waitList(allConnected, 20_000);
    expect(l.ok, deviceStates(l.rows)).toBe(true);
    await adoptTap();
    expect(s.log(), s.log().split('\n').filter((x) => /onet|netdom|nic/.test(x)).join('\n')).toMatch(/netdom: uplink NIC \S*02:00\.0, offloads: none/);
    const { per, r } = await bytesPerPacket(2);
    expect(r.bytes).toBeGreaterThan(1 << 20);
    expect(per).toBeLessThanOrEqual(1514);
    console.log(`guest -> host TAP without offloads: ${gbit(r)} Gbit/s, ${Math.round(per)} bytes per packet`);
  }, 60_000);
});
