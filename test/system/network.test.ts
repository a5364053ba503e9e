// The whole system, network side (issue 4): a net driver domain and two guests deployed with
// `ringside up`, each guest's vif a TAP in its own network namespace. Real Linux TCP/IP (ping,
// iperf3) goes guest A's TAP -> netfront -> netback + switch in netdom -> netfront -> guest B's
// TAP, and back; the link comes back by itself after a netdom restart; `down` leaves nothing.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { until } from '../support/until.js';
import { existsSync, readlinkSync, statSync } from 'node:fs';
import { requireBuilt } from '../support/platform.js';
import { iperf3, type Iperf3Result } from '../../src/netns/iperf3.js';
import { SystemUnderTest, alive, allConnected, deviceStates, netnsNames, procStatus, run, type UpJson } from './support.js';

/** Why this kernel/container cannot run the test, or null. */
async function netUnsupported(): Promise<string | null> {
  if (process.getuid?.() !== 0) return 'not running as root (TAP devices and network namespaces need CAP_NET_ADMIN)';
  if (!existsSync('/dev/net/tun')) return 'no /dev/net/tun in this kernel/container';
  const probe = `rstprobe${process.pid}`;
  const add = await run('ip', ['netns', 'add', probe]);
  if (add.code !== 0) return `network namespaces unavailable: ${add.stderr.trim() || `ip netns add exited ${add.code}`}`;
  await run('ip', ['netns', 'del', probe]);
  return null;
}

const why = await netUnsupported();
if (why) console.warn(`skipping the system network test: ${why}`);

const pid = process.pid;
const NET = 'sysnet';
const GA = 'sysna';
const GB = 'sysnb';
const NSA = `rst${pid}a`;
const NSB = `rst${pid}b`;
// an unused /24 in 10/8 per test process (the default system uses 10.137.0.0/24)
const SUBNET = `10.${200 + (pid % 50)}.${(pid >> 6) % 250}`;
const IPA = `${SUBNET}.1`;
const IPB = `${SUBNET}.2`;
const PORT = 5201 + (pid % 1000);
const mac = (n: number) => `00:16:3e:${((pid >> 8) & 0x7f).toString(16).padStart(2, '0')}:${(pid & 0xff).toString(16).padStart(2, '0')}:0${n}`;

const files = {
  [`${NET}.cfg`]: `# net driver domain of the system test\nname = "${NET}"\nmemory = 128\ndriver_domain = 1\nrole = "net"\non_crash = "restart"\n`,
  [`${GA}.cfg`]: `name = "${GA}"\nmemory = 128\nvif = [ 'backend=${NET}, mac=${mac(1)}, ip=${IPA}/24, netns=${NSA}' ]\n`,
  [`${GB}.cfg`]: `name = "${GB}"\nmemory = 128\nvif = [ 'backend=${NET}, mac=${mac(2)}, ip=${IPB}/24, netns=${NSB}' ]\n`,
};

const nsRun = (ns: string, cmd: string, args: string[], timeoutMs = 20_000) => run('ip', ['netns', 'exec', ns, cmd, ...args], { timeoutMs });
/** iperf3 server (one client, then exit) in `srvNs`, client in `cliNs`; `reverse` makes the server send. */
const iperf = (srvNs: string, cliNs: string, srvIp: string, reverse: boolean): Promise<Iperf3Result> =>
  iperf3({ ns: cliNs }, { ns: srvNs, ip: srvIp }, { seconds: 3, port: PORT, reverse });

const tapAddr = async (ns: string) => (await nsRun(ns, 'ip', ['-o', 'addr', 'show', 'dev', 'eth0'])).stdout;

describe.skipIf(why !== null)('network: a driver domain switching TCP between two guests, end to end through ringside up', () => {
  let s: SystemUnderTest;
  let atUp: string[] = [];

  beforeAll(async () => {
    requireBuilt();
    s = new SystemUnderTest('ringside-sysnet-', files);
    await s.up();
    // What a user sees the moment `up` returns ...
    atUp = await Promise.all([[NSA, IPA], [NSB, IPB]].map(async ([ns, ip]) => `${ns}: ${(await tapAddr(ns)).includes(`${ip}/24`) ? 'configured' : 'missing'}`));
    // ... and, so the other tests don't depend on that, the TAPs once they are there.
    await until('both TAPs to carry their addresses', async () => [await tapAddr(NSA), await tapAddr(NSB)], ([a, b]) => a.includes(`${IPA}/24`) && b.includes(`${IPB}/24`));
  });

  afterAll(async () => {
    if (!s) return;
    await s.teardown();
    // last resort for our own, pid-named namespaces (down should have removed them)
    const ns = await netnsNames();
    for (const n of [NSA, NSB]) if (ns.includes(n)) await run('ip', ['netns', 'del', n]);
  });

  it('deploys netdom and two guests, each vif a TAP with its address in its own namespace', async () => {
    const r = s.last as UpJson;
    expect(r.domains.map((d) => `${d.name}:${d.role}`).sort()).toEqual(['Domain-0:control', `${GA}:guest`, `${GB}:guest`, `${NET}:driver`, 'xenstored:xenstore']);
    expect(allConnected(r.domains), deviceStates(r.domains)).toBe(true);
    const ns = await netnsNames();
    expect(ns).toContain(NSA);
    expect(ns).toContain(NSB);
    const a = await nsRun(NSA, 'ip', ['-o', 'addr', 'show', 'dev', 'eth0']);
    expect(a.code, a.stderr).toBe(0);
    expect(a.stdout).toContain(`${IPA}/24`);
    const link = await nsRun(NSB, 'ip', ['-d', 'link', 'show', 'dev', 'eth0']);
    expect(link.stdout).toContain(mac(2));
    expect(link.stdout, link.stdout).toMatch(/tun type tap/);
    expect(link.stdout).toMatch(/state UP|LOWER_UP/);
  });

  it('each guest runs confined: CAP_NET_ADMIN only, no_new_privs, seccomp, inside its namespace under a user namespace of its own', () => {
    const r = s.last as UpJson;
    for (const [g, ns] of [[GA, NSA], [GB, NSB]]) {
      const pid = r.domains.find((d) => d.name === g)!.pid as number;
      // bit 12: CAP_NET_ADMIN, counted against the namespace's own user namespace
      expect(procStatus(pid), g).toEqual({ capEff: '0000000000001000', capBnd: '0000000000001000', nnp: '1', seccomp: '2' });
      expect(statSync(`/proc/${pid}/ns/net`).ino, `${g} is not in /run/netns/${ns}`).toBe(statSync(`/run/netns/${ns}`).ino);
      expect(readlinkSync(`/proc/${pid}/ns/user`), `${g} holds its capability against the host's user namespace`).not.toBe(readlinkSync('/proc/self/ns/user'));
    }
    expect(s.logTail(1000)).toMatch(new RegExp(`'${GA}' confined: 1 rw, 0 ro, netns \\S+, sockets in \\S+, CAP_NET_ADMIN only`));
  });

  it('up returns only once each guest has its TAP configured (the export is usable when up says ready)', () => {
    expect(atUp).toEqual([`${NSA}: configured`, `${NSB}: configured`]);
  });

  it('ping between the guests namespaces through netdom', async () => {
    const p = await nsRun(NSA, 'ping', ['-c', '3', '-i', '0.2', '-W', '2', IPB]);
    expect(p.code, p.stdout + p.stderr).toBe(0);
    expect(p.stdout).toMatch(/3 received/);
    const q = await nsRun(NSB, 'ping', ['-c', '1', '-W', '2', '-s', '1472', '-M', 'do', IPA]); // a full 1500-byte frame
    expect(q.code, q.stdout + q.stderr).toBe(0);
  });

  it('iperf3 TCP for 3 s each way with nonzero throughput', async () => {
    const ab = await iperf(NSB, NSA, IPB, false); // A sends to B
    expect(ab.bytes).toBeGreaterThan(0);
    expect(ab.bps).toBeGreaterThan(0);
    const ba = await iperf(NSB, NSA, IPB, true); // B sends to A
    expect(ba.bytes).toBeGreaterThan(0);
    expect(ba.bps).toBeGreaterThan(0);
  });

  it('after ringside restart of netdom the link comes back by itself', async () => {
    const before = (await s.list()).find((d) => d.name === NET)!;
    const r = await s.cli(['restart', NET], 40_000);
    expect(r.code, r.stderr).toBe(0);
    // no action on the guests: ping until it answers again
    const end = Date.now() + 30_000;
    let p = await nsRun(NSA, 'ping', ['-c', '1', '-W', '1', IPB]);
    while (p.code !== 0 && Date.now() < end) p = await nsRun(NSA, 'ping', ['-c', '1', '-W', '1', IPB]);
    const rows = await s.list();
    expect(p.code, `no ping 30 s after restart; devices ${deviceStates(rows)}\n--- ringside.log ---\n${s.logTail()}`).toBe(0);
    const nd = rows.find((d) => d.name === NET)!;
    expect(nd.restarts).toBe(1);
    expect(nd.domid).toBe(before.domid);
    expect(nd.pid).not.toBe(before.pid);
    expect(allConnected(rows), deviceStates(rows)).toBe(true);
    const again = await nsRun(NSB, 'ping', ['-c', '3', '-i', '0.2', '-W', '2', IPA]);
    expect(again.code, again.stdout + again.stderr).toBe(0);
  });

  it('ringside down leaves no TAP, namespace, process or socket', async () => {
    const pids = [...s.pids];
    const d = await s.down();
    expect(d.code, d.stderr).toBe(0);
    for (const p of pids) expect(alive(p), `pid ${p} after down`).toBe(false);
    expect(s.socketsUnderState()).toEqual([]);
    // no TAP left: none in the host namespace named after our guests, none in theirs if those linger
    const links = (await run('ip', ['-o', 'link', 'show'])).stdout;
    for (const n of [GA, GB, NSA, NSB, NET]) expect(links).not.toContain(n);
    const ns = await netnsNames();
    for (const n of [NSA, NSB]) {
      if (!ns.includes(n)) continue;
      const inside = await nsRun(n, 'ip', ['-o', 'link', 'show']);
      expect(inside.stdout.split('\n').filter((l) => l.trim() && !/: lo:/.test(l)), `links left in netns ${n}`).toEqual([]);
    }
    // and the guests' namespaces are gone with them
    expect(ns.filter((n) => n === NSA || n === NSB), `namespaces left after ringside down (ip netns list):\n${ns.join('\n')}\n--- ringside.log ---\n${s.logTail(25)}`).toEqual([]);
  });
});

// Namespaces are shared with the operator: ringside deletes only those it recorded making, and
// all of those, even when nothing of the system is left alive to do it.
describe.skipIf(why !== null)('network namespaces: never an operator one, never one left behind', () => {
  const NK = 'sysnk';
  const GK = 'sysnkg';
  const NSK = `rst${pid}k`;
  let s: SystemUnderTest;

  beforeAll(() => {
    requireBuilt();
    s = new SystemUnderTest('ringside-sysns-', {
      [`${NK}.cfg`]: `name = "${NK}"\nmemory = 128\ndriver_domain = 1\nrole = "net"\n`,
      [`${GK}.cfg`]: `name = "${GK}"\nmemory = 128\nvif = [ 'backend=${NK}, mac=${mac(3)}, ip=${SUBNET}.3/24, netns=${NSK}' ]\n`,
    });
  });

  afterAll(async () => {
    if (!s) return;
    await s.teardown();
    if ((await netnsNames()).includes(NSK)) await run('ip', ['netns', 'del', NSK]);
  });

  it("up refuses a guest whose netns= is an existing namespace ringside did not make, and leaves it alone", async () => {
    const add = await run('ip', ['netns', 'add', NSK]);
    expect(add.code, add.stderr).toBe(0);
    const ino = statSync(`/run/netns/${NSK}`).ino;
    const up = await s.tryUp();
    expect(up.code).not.toBe(0);
    expect(up.stderr).toContain(`guest '${GK}': network namespace ${NSK} already exists`);
    expect(up.stderr).toContain(`delete it with \`ip netns del ${NSK}\` or choose another netns=`);
    const d = await s.down();
    expect(d.code, d.stderr).toBe(0);
    expect(statSync(`/run/netns/${NSK}`, { throwIfNoEntry: false })?.ino, `the operator's namespace after up and down\n${s.logTail(20)}`).toBe(ino);
    const del = await run('ip', ['netns', 'del', NSK]);
    expect(del.code, del.stderr).toBe(0);
  });

  it('after hv and every domain are SIGKILLed, ringside down removes the namespaces they left', async () => {
    const r = await s.up();
    expect(allConnected(r.domains), deviceStates(r.domains)).toBe(true);
    const killed = await s.crash();
    expect(killed.filter(alive), 'pids alive after SIGKILL').toEqual([]);
    // nobody was left to remove it: the crash leaves the namespace behind
    expect(await netnsNames()).toContain(NSK);
    const d = await s.down();
    expect(d.code, d.stderr).toBe(0);
    expect(d.stderr).toContain(`removed leftover network namespace: ${NSK}`);
    expect(await netnsNames()).not.toContain(NSK);
    expect(s.socketsUnderState()).toEqual([]);
  });
});
