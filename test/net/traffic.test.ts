// Real Linux TCP through two guests' TAPs, netfront, netback and the switch in netdom, and back.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NetRig, missingTool, netUnsupported, nsRun, run, type Guest } from './support.js';
import type { Probe } from '../support/platform.js';

const why = await netUnsupported();
if (why) console.warn(`skipping net traffic tests: ${why}`);

describe.skipIf(why !== null)('net: two guests through netdom', () => {
  let rig: NetRig;
  let nd: Probe;
  let a: Guest;
  let b: Guest;

  beforeAll(async () => {
    if (await missingTool('iperf3')) throw new Error('iperf3 is not installed (apt-get install iperf3)');
    rig = new NetRig();
    nd = await rig.netdom();
    a = await rig.guest(nd, 'ga', 1);
    b = await rig.guest(nd, 'gb', 2);
  });

  afterAll(async () => {
    if (!rig) return;
    await rig.close();
    expect(await rig.leftovers()).toEqual([]);
  });

  it('pings between the two namespaces', async () => {
    await rig.reaches(a, b.ip);
    await rig.reaches(b, a.ip);
  });

  it('passes full-size 1500-byte frames (DF set, no fragmentation)', async () => {
    const r = await rig.ping(a, b.ip, ['-c', '3', '-W', '2', '-M', 'do', '-s', '1472']);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const big = await rig.ping(a, b.ip, ['-c', '1', '-W', '1', '-M', 'do', '-s', '1473']);
    expect(big.code).not.toBe(0);
  });

  it('runs iperf3 TCP both ways with no stalled interval, GSO frames passing whole', async () => {
    const before = (await rig.cmd(a.dom, 'frontStats')) as { nf: { txGso: number } };
    const up = await rig.iperf(a, b, 3);
    expect(up.bps).toBeGreaterThan(0);
    expect(up.intervals.every((x) => x > 0), `intervals ${up.intervals}`).toBe(true);
    const down = await rig.iperf(a, b, 3, ['-R']);
    expect(down.bps).toBeGreaterThan(0);
    expect(down.intervals.every((x) => x > 0), `intervals ${down.intervals}`).toBe(true);
    const after = (await rig.cmd(a.dom, 'frontStats')) as { nf: { txGso: number } };
    expect(after.nf.txGso).toBeGreaterThan(before.nf.txGso);
    const sb = (await rig.cmd(b.dom, 'frontStats')) as { nf: { rxGso: number } };
    expect(sb.nf.rxGso).toBeGreaterThan(0);
    console.log(`iperf3 through netdom: ${(up.bps / 1e9).toFixed(2)} Gbit/s a->b, ${(down.bps / 1e9).toFixed(2)} Gbit/s b->a`);
  });

  it('drops and counts a forged source MAC while the other traffic is unaffected', async () => {
    const flow = rig.iperf(b, a, 3, [], 5202);
    const forged = await rig.cmd(a.dom, 'sendForged', { dst: b.mac, src: '00:16:3e:66:66:66', count: 500 });
    const r = await flow;
    // a second with no bytes is the scheduler's on a shared machine; a stream that moved nothing is ours
    expect(r.intervals.reduce((x, y) => x + y, 0), `intervals ${r.intervals}`).toBeGreaterThan(0);
    const v = await rig.vif(nd, a.dom);
    expect(v.spoofDrops).toBeGreaterThanOrEqual(Number(forged.sent));
    expect(Number(forged.sent)).toBeGreaterThan(0);
    expect(v.dead).toBe(false);
    // a spoofer in the guest's own stack: change the TAP's MAC, its frames are dropped
    const spoofBefore = Number(v.spoofDrops);
    await nsRun(a.ns, 'ip', ['link', 'set', 'dev', 'eth0', 'address', '00:16:3e:66:66:67']);
    await rig.ping(a, b.ip, ['-c', '2', '-W', '1']);
    await nsRun(a.ns, 'ip', ['link', 'set', 'dev', 'eth0', 'address', a.mac]);
    expect(Number((await rig.vif(nd, a.dom)).spoofDrops)).toBeGreaterThan(spoofBefore);
    await rig.reaches(a, b.ip);
  });

  it('reaches the host through an uplink TAP on the switch, learning the host MAC', async () => {
    const ns = rig.ns('up');
    await run('ip', ['netns', 'add', ns]);
    const dev = `rs${rig.tag}up`;
    await rig.cmd(nd, 'uplink', { name: dev, netns: ns });
    await nsRun(ns, 'ip', ['addr', 'add', '10.213.0.200/24', 'dev', dev]);
    const r = await rig.ping(a, '10.213.0.200', ['-c', '2', '-W', '2']);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const st = (await rig.cmd(nd, 'backStats')) as { uplink: { inFrames: number; outFrames: number } };
    expect(st.uplink.inFrames).toBeGreaterThan(0);
    expect(st.uplink.outFrames).toBeGreaterThan(0);
    const tcp = await rig.iperf(a, { ns, ip: '10.213.0.200' } as Guest, 2, [], 5203);
    expect(tcp.intervals.reduce((x, y) => x + y, 0), `intervals ${tcp.intervals}`).toBeGreaterThan(0);
  });
});
