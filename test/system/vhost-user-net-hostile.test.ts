// A compromised VM's QEMU against a running netdom (issues 12 and 13): on a VM vif's vhost-user
// socket it sends what a frontend must not, at each layer (the message framing, the memory table,
// the tx and rx virtqueues), and frames from a MAC that is not its own. Each time netdom names what
// was wrong in its log and ends that connection or stops that ring, and nothing else: netdom keeps
// its pid, the two bystander guests (Xen-ABI netfronts on the same switch) keep reaching each
// other, the socket keeps listening, and an honest frontend then exchanges ICMP with a bystander.
// Last, netdom is SIGKILLed under a connected frontend and comes back serving both kinds of guest.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { requireBuilt } from '../support/platform.js';
import { until, waitFor } from '../support/until.js';
import { OpenFrontends, protocolAttacks } from '../support/vhost-user.js';
import { echoReply, echoRequest, icmpCounters, type EchoEnds } from '../support/icmp.js';
import { SystemUnderTest, netnsNames, run, type UpJson } from './support.js';
import { XenstoreClient } from '../../src/xenstore/client.js';
import { statePaths, vhostSocket } from '../../src/control/paths.js';
import { parseVif } from '../../src/config/vif-spec.js';
import { vhostDeviceKeys } from '../../src/vhost-user/xenstore-keys.js';
import { writeVif } from '../../domains/dom0/xsnodes.js';
import { XenbusState } from '../../src/abi/xenbus.js';
import { VIRTIO_NET_HDR_SIZE, VIRTIO_NET_RXQ, VIRTIO_NET_TXQ, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE } from '../../src/abi/virtio.js';
import { GUEST, startNetQueues, type NetQueues } from '../../src/vhost-user/testing/frontend.js';
import { native } from '../../src/native/index.js';

const pid = process.pid;
const NET = `vnh${pid}`;
const GA = `vnha${pid}`;
const GB = `vnhb${pid}`;
const NSA = `rsv${pid}a`;
const NSB = `rsv${pid}b`;
const VM = 'rogue';
/** no domain has this id: the vif is dom0's doing alone, as a VM's would be before QEMU starts */
const VM_DOMID = 900;
const SUBNET = `10.${150 + (pid % 50)}.${(pid >> 6) % 250}`;
const IPA = `${SUBNET}.1`;
const IPB = `${SUBNET}.2`;
const VM_IP = `${SUBNET}.9`;
const mac = (n: number) => `00:16:3e:${((pid >> 8) & 0x7f).toString(16).padStart(2, '0')}:${(pid & 0xff).toString(16).padStart(2, '0')}:0${n}`;
const VM_MAC = mac(9);
/** the VM talking to bystander A as itself */
const HONEST: EchoEnds = { srcMac: VM_MAC, dstMac: mac(1), srcIp: VM_IP, dstIp: IPA };
const HONEST_ID = 0x4242;
const FORGED_ID = 0x6666;
/** a frame for the tx ring's hostile cases: somewhere to point descriptors */
const FRAME_AT = 0x30000;

describe('hostile vhost-user frontends against a running netdom with two bystander guests', () => {
  let s: SystemUnderTest;
  let xs: XenstoreClient;
  let socket: string;
  let backendPath: string;
  let netPid: number;
  let seq = 0;
  let open: OpenFrontends<NetQueues>;
  const hangUp = () => open.hangUp();
  let netDomid: number;

  /** The VM vif as dom0 writes it for a VM it is about to start (and again when netdom restarts): a vif under netdom marked vhost-user. */
  async function writeVmVif(): Promise<string> {
    const vif = parseVif(`backend=${NET}, mac=${VM_MAC}`, { file: 'test', line: 1 }, VM);
    socket = vhostSocket(statePaths(s.state), NET, VM, `vif${vif.devid}`);
    return (await xs.transaction((tx) => writeVif(tx, VM_DOMID, netDomid, vif, { backend: true, frontend: false }, vhostDeviceKeys(socket, 1)))).backend;
  }

  const nsRun = (ns: string, cmd: string, args: string[]) => run('ip', ['netns', 'exec', ns, cmd, ...args], { timeoutMs: 20_000 });

  async function honest(): Promise<NetQueues> {
    const q = await startNetQueues(socket, 0n);
    return open.add(q);
  }


  /**
   * Echo requests from the VM to bystander A until one is answered (a frame can meet a full queue
   * on a loaded machine, so no single one is counted on); gives every reply id seen on the way.
   */
  async function exchange(q: NetQueues, first: Uint8Array[] = []): Promise<Set<number>> {
    const ids = new Set<number>();
    const sent = new Set<number>();
    let answered = false;
    const look = (f: Uint8Array) => {
      const r = echoReply(f, HONEST);
      if (!r) return;
      ids.add(r.id);
      if (r.id === HONEST_ID && sent.has(r.seq)) answered = true;
    };
    for (const f of first) await q.send(f);
    for (let t = 0; t < 20 && !answered; t++) {
      const n = ++seq & 0xffff;
      sent.add(n);
      await q.send(echoRequest(HONEST, HONEST_ID, n));
      await waitFor(() => (q.drain(look), answered), `an echo reply from ${GA}`, 1.5).catch(() => {});
    }
    if (!answered) throw new Error(`${GA} answered none of ${sent.size} echo requests from the VM's vif`);
    return ids;
  }

  /** The bystanders reach each other through netdom (pings until one answers, 30 s). */
  async function bystandersReach(): Promise<void> {
    await until(`${GA} to reach ${GB} through netdom`, () => nsRun(NSA, 'ping', ['-c', '1', '-W', '1', IPB]), (r) => r.code === 0);
  }

  beforeAll(async () => {
    requireBuilt();
    s = new SystemUnderTest('ringside-vnh-', {
      [`${NET}.cfg`]: `name = "${NET}"\nmemory = 128\ndriver_domain = 1\nrole = "net"\non_crash = "restart"\n`,
      [`${GA}.cfg`]: `name = "${GA}"\nmemory = 128\nvif = [ 'backend=${NET}, mac=${mac(1)}, ip=${IPA}/24, netns=${NSA}' ]\n`,
      [`${GB}.cfg`]: `name = "${GB}"\nmemory = 128\nvif = [ 'backend=${NET}, mac=${mac(2)}, ip=${IPB}/24, netns=${NSB}' ]\n`,
    });
    open = new OpenFrontends('netdom', () => s.logTail(100_000));
    const up: UpJson = await s.up();
    const net = up.domains.find((d) => d.name === NET)!;
    netPid = net.pid as number;
    xs = await XenstoreClient.connect(up.xenstoredPath);
    netDomid = net.domid;
    backendPath = await writeVmVif();
    await until('netdom to listen on the VM vif at InitWait', () => xs.read(`${backendPath}/state`), (st) => st === String(XenbusState.InitWait) && existsSync(socket));
    // A answers the VM at its MAC without asking (the test's frontend does not do ARP)
    const neigh = await nsRun(NSA, 'ip', ['neigh', 'replace', VM_IP, 'lladdr', VM_MAC, 'dev', 'eth0', 'nud', 'permanent']);
    expect(neigh.code, neigh.stderr).toBe(0);
    await bystandersReach();
  });

  // a failed case leaves nobody connected for the next one
  afterEach(() => hangUp());

  afterAll(async () => {
    open?.closeAll();
    await xs?.close();
    await s?.teardown();
    const ns = await netnsNames();
    for (const n of [NSA, NSB]) if (ns.includes(n)) await run('ip', ['netns', 'del', n]);
  });

  it('an honest frontend exchanges ICMP with a bystander through the switch', async () => {
    const q = await honest();
    const ids = await exchange(q);
    expect([...ids]).toEqual([HONEST_ID]);
    await hangUp();
  });

  it('replies that find no rx buffer posted wait in netdom until the VM posts one', async () => {
    const q = await startNetQueues(socket, 0n, { postRx: false });
    open.add(q);
    const echoReps = async () => icmpCounters((await nsRun(NSA, 'cat', ['/proc/net/snmp'])).stdout).OutEchoReps;
    const before = await echoReps();
    // Requests until A has answered five (no single frame is counted on): their replies are then on
    // their way to a VM with nowhere to put them
    const sent = new Set<number>();
    let answered = 0;
    for (let t = 0; t < 20 && answered < 5; t++) {
      const n = ++seq & 0xffff;
      sent.add(n);
      await q.send(echoRequest(HONEST, HONEST_ID, n));
      answered = await until(`${GA} to answer echo request ${n}`, echoReps, (v) => v > before + answered, 1.5).then((v) => v - before, () => answered);
    }
    expect(answered, `${GA} answered ${answered} of the VM's ${sent.size} echo requests`).toBeGreaterThanOrEqual(5);
    q.postRx();
    const got = new Set<number>();
    await waitFor(() => {
      q.drain((f) => {
        const r = echoReply(f, HONEST);
        if (r?.id === HONEST_ID && sent.has(r.seq)) got.add(r.seq);
      });
      return got.size >= 5;
    }, 'the replies to 5 answered requests once rx buffers are posted');
    await hangUp();
  });

  it("frames from another guest's MAC are dropped at the switch, and the VM's own still pass", async () => {
    const q = await honest();
    // as bystander B, then as a multicast source: were either forwarded, A would answer it at the VM's MAC
    const forged = [mac(2), '01:00:5e:00:00:01'].map((m) => echoRequest({ ...HONEST, srcMac: m }, FORGED_ID, 1));
    const ids = await exchange(q, forged);
    expect(ids.has(FORGED_ID), 'netdom forwarded a frame with a forged source MAC').toBe(false);
    await hangUp();
    await bystandersReach();
  });

  // Each: what the rogue frontend does, and what netdom's log must say of it.
  const cases: [string, () => Promise<void>, RegExp][] = [
    ...protocolAttacks(() => socket),
    ['a tx descriptor chain that loops', async () => {
      const q = await honest();
      q.raw(VIRTIO_NET_TXQ, [
        { i: 0, addr: GUEST.GPA + FRAME_AT, len: VIRTIO_NET_HDR_SIZE, flags: VIRTQ_DESC_F_NEXT, next: 1 },
        { i: 1, addr: GUEST.GPA + FRAME_AT + 0x100, len: 64, flags: VIRTQ_DESC_F_NEXT, next: 0 },
      ], 0);
    }, /ring 1 stopped: descriptor chain from head 0 is longer than its 8-entry table/],
    ['a tx buffer outside guest memory', async () => {
      const q = await honest();
      q.raw(VIRTIO_NET_TXQ, [
        { i: 0, addr: GUEST.GPA + FRAME_AT, len: VIRTIO_NET_HDR_SIZE, flags: VIRTQ_DESC_F_NEXT, next: 1 },
        { i: 1, addr: GUEST.GPA + GUEST.MEM - 256, len: 1024, flags: 0, next: 0 },
      ], 0);
    }, /ring 1 stopped: descriptor 1 of head 0: buffer at guest 0x400fff00 \(1024 bytes\) is not inside guest memory/],
    ['a tx chain with a device-writable buffer', async () => {
      const q = await honest();
      q.raw(VIRTIO_NET_TXQ, [
        { i: 0, addr: GUEST.GPA + FRAME_AT, len: VIRTIO_NET_HDR_SIZE, flags: VIRTQ_DESC_F_NEXT, next: 1 },
        { i: 1, addr: GUEST.GPA + FRAME_AT + 0x100, len: 64, flags: VIRTQ_DESC_F_WRITE, next: 0 },
      ], 0);
    }, /ring 1 stopped: tx chain at head 0 has device-writable buffers/],
    ['a tx avail index far ahead of the ring', async () => {
      const q = await honest();
      q.ram.setUint16(q.ring(VIRTIO_NET_TXQ, GUEST.AVAIL) + 2, 200, true);
      native.eventfdSignal(q.kick[VIRTIO_NET_TXQ]);
    }, /ring 1 stopped: avail index 200 is 200 ahead of ours/],
    ['an rx avail index far ahead of the ring (seen when a frame arrives for the VM)', async () => {
      const q = await honest();
      const avail = q.ring(VIRTIO_NET_RXQ, GUEST.AVAIL) + 2;
      q.ram.setUint16(avail, q.ram.getUint16(avail, true) + 200, true);
      // A's replies to these are what netdom delivers into the broken ring
      for (let t = 0; t < 20 && !/ring 0 stopped/.test(s.logTail(20_000)); t++) {
        await q.send(echoRequest(HONEST, HONEST_ID, ++seq & 0xffff));
        await waitFor(() => /ring 0 stopped/.test(s.logTail(20_000)), 'ring 0 stopped in the log', 1.5).catch(() => {});
      }
    }, /ring 0 stopped: avail index \d+ is (\d{3}) ahead of ours/],
  ];

  for (const [what, act, reason] of cases) {
    it(`${what}: netdom says so and cuts off only that, the bystanders carry on, and an honest frontend then gets through`, async () => {
      const logFrom = s.logTail(100_000).length;
      await act();
      const said = await until(`netdom to log ${reason}`, () => s.logTail(100_000).slice(logFrom), (l) => reason.test(l));
      expect(said).toMatch(reason);
      await hangUp();

      const rows = await s.list();
      const net = rows.find((d) => d.name === NET)!;
      expect(net.pid, 'netdom was restarted or replaced').toBe(netPid);
      expect(net.restarts).toBe(0);
      await bystandersReach();

      await until('the VM vif back at InitWait', () => xs.read(`${backendPath}/state`), (st) => st === String(XenbusState.InitWait));
      await exchange(await honest());
      await hangUp();
    });
  }

  // last: it replaces netdom, which every case above checks is the one they started with
  it('netdom SIGKILLed with a VM frontend connected: dom0 restarts it under its domid, it listens again on the rewritten VM vif, and both kinds of guest get through', async () => {
    const q = await honest();
    await exchange(q);
    process.kill(netPid, 'SIGKILL');
    const rows = await until('dom0 to restart netdom', () => s.list(), (r) => {
      const n = r.find((d) => d.name === NET);
      return n !== undefined && n.restarts === 1 && typeof n.pid === 'number' && n.pid !== netPid;
    });
    expect(rows.find((d) => d.name === NET)!.state).not.toBe('dead');
    open.closeAll();
    // dom0 rewrites the backend dirs of the devices it manages; this VM is the test's, so the test does it
    expect(await writeVmVif()).toBe(backendPath);
    await until('the VM vif back at InitWait under the new netdom', () => xs.read(`${backendPath}/state`), (st) => st === String(XenbusState.InitWait) && existsSync(socket));
    await exchange(await honest());
    await bystandersReach();
    await hangUp();
  });
});
