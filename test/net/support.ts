// Net integration-test rig: an in-process hv (the test is dom0), nettest domains as netdom and
// guests, and async helpers for ip/ping/iperf3 inside the guests' namespaces. Every name carries
// the test process's pid, and close() removes whatever is left.
import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import { pack } from 'msgpackr';
import { Probe, TestPlatform, sleep } from '../support/platform.js';
import type { NetfrontConnectInfo } from '../../src/netfront/netfront.js';
import type { NetifRate } from '../../src/netif/params.js';
import { waitForSocket } from '../../src/control/unix.js';
import { iperf3, type Iperf3Result } from '../../src/netns/iperf3.js';

import { run, type Run } from '../support/run.js';
export { run, type Run };

export function nsRun(ns: string, cmd: string, args: string[], timeoutMs = 30_000): Promise<Run> {
  return run('ip', ['netns', 'exec', ns, cmd, ...args], timeoutMs);
}

/** why the kernel cannot run these tests, or null */
export async function netUnsupported(): Promise<string | null> {
  if (process.getuid?.() !== 0) return 'not running as root (TAP devices and namespaces need CAP_NET_ADMIN)';
  if (!existsSync('/dev/net/tun')) return 'no /dev/net/tun in this kernel/container';
  const probe = `rsnprobe${process.pid % 100000}`;
  const add = await run('ip', ['netns', 'add', probe]);
  if (add.code !== 0) return `network namespaces unavailable: ${add.stderr.trim()}`;
  await run('ip', ['netns', 'del', probe]);
  return null;
}

export function missingTool(tool: string): Promise<boolean> {
  return run('sh', ['-c', `command -v ${tool}`]).then((r) => r.code !== 0);
}

const waitConnect = (path: string, ms = 15_000): Promise<Socket> => waitForSocket(path, ms, 'control socket');

export interface Guest {
  dom: Probe;
  mac: string;
  ip: string;
  ns: string;
  info: NetfrontConnectInfo;
}

export class NetRig {
  readonly t = new TestPlatform();
  readonly tag = `${process.pid % 100000}`;
  private readonly namespaces = new Set<string>();
  private readonly children = new Set<ChildProcess>();
  private readonly doms: Probe[] = [];

  ns(suffix: string): string {
    const n = `rsn${this.tag}${suffix}`;
    this.namespaces.add(n);
    return n;
  }

  async domain(name: string, ioFrames: number): Promise<Probe> {
    const { result } = await this.t.dom0.call('domain_create', { name, kind: 'nettest', memoryMiB: 128, ioFrames, grantFrames: 8 });
    const control = join(this.t.dir, `${name}.sock`);
    await this.t.dom0.call('domain_unpause', { domid: result.domid, bootArgs: pack({ control }) });
    const sock = await waitConnect(control);
    sock.on('error', () => {}); // the domain resets it when it shuts down
    const p = new Probe(result.domid, name, sock);
    this.doms.push(p);
    return p;
  }

  async cmd(p: Probe, cmd: string, args: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
    const r = (await p.cmd(cmd, args)) as Record<string, unknown>;
    if (!r.ok) throw new Error(`${p.name} ${cmd}: ${String(r.error)}`);
    return r;
  }

  async netdom(opts: Record<string, unknown> = {}): Promise<Probe> {
    const nd = await this.domain(`netdom${this.tag}`, 1024);
    await this.cmd(nd, 'backInit', { opts });
    return nd;
  }

  /** A guest with netfront connected to `netdom` (and a TAP in a fresh namespace unless tap is false). */
  async guest(netdom: Probe, name: string, n: number, o: { queues?: number; rate?: NetifRate | null; tap?: boolean; mtu?: number } = {}): Promise<Guest> {
    const dom = await this.domain(`${name}${this.tag}`, 1200);
    const mac = `00:16:3e:5e:00:${n.toString(16).padStart(2, '0')}`;
    const ip = `10.213.0.${n}`;
    const { info } = (await this.cmd(dom, 'frontInit', { backendDomid: netdom.domid, mac, queues: o.queues ?? 1 })) as unknown as { info: NetfrontConnectInfo };
    await this.connect(netdom, dom, mac, info, o.rate ?? null);
    const ns = this.ns(`g${n}`);
    if (o.tap !== false) await this.cmd(dom, 'tap', { netns: ns, mac, ip: `${ip}/24`, mtu: o.mtu ?? 1500 });
    return { dom, mac, ip, ns, info };
  }

  connect(netdom: Probe, g: Probe, mac: string, info: NetfrontConnectInfo, rate: NetifRate | null = null) {
    return this.cmd(netdom, 'backConnect', { params: { frontendDomid: g.domid, name: `vif${g.domid}.0`, mac, queues: info.queues, features: info.features, rate } });
  }

  async vif(netdom: Probe, g: Probe): Promise<Record<string, number | string | boolean | null>> {
    const { vifs } = (await this.cmd(netdom, 'backStats')) as unknown as { vifs: Record<string, number | string | boolean | null>[] };
    const v = vifs.filter((x) => x.name === `vif${g.domid}.0`).at(-1);
    if (!v) throw new Error(`no vif for dom${g.domid}`);
    return v;
  }

  async ping(from: Guest, to: string, args: string[] = ['-c', '3', '-W', '2']): Promise<Run> {
    return nsRun(from.ns, 'ping', [...args, to], 30_000);
  }

  /**
   * Waits until `from` gets an answer from `to`: one-second pings, retried until `deadlineMs`.
   * A loaded machine may lose or delay a packet; a broken path answers nothing for the whole
   * deadline. Throws with the last ping's output.
   */
  async reaches(from: Guest, to: string, deadlineMs = 30_000): Promise<void> {
    const end = Date.now() + deadlineMs;
    for (let tries = 1; ; tries++) {
      const r = await this.ping(from, to, ['-c', '1', '-W', '1']);
      if (r.code === 0) return;
      if (Date.now() > end) throw new Error(`${from.ip} got no answer from ${to} in ${tries} pings over ${deadlineMs / 1000} s; last ping: ${r.stdout}${r.stderr}`);
      await sleep(200);
    }
  }

  /** iperf3 TCP from `client` to `server` for `secs` seconds; throws, saying why, if it did not run */
  iperf(client: Guest, server: Guest, secs: number, extra: string[] = [], port = 5201): Promise<Iperf3Result> {
    return iperf3(client, server, {
      seconds: secs,
      port,
      bind: true,
      extra,
      onServer: (srv) => {
        this.children.add(srv);
        srv.on('exit', () => this.children.delete(srv));
      },
    });
  }

  private closing: Promise<void> | null = null;

  close(): Promise<void> {
    this.closing ??= this.closeOnce();
    return this.closing;
  }

  private async closeOnce(): Promise<void> {
    for (const c of this.children) c.kill('SIGKILL');
    for (const d of this.doms) {
      await Promise.race([d.cmd('shutdown'), sleep(3000)]).catch(() => {});
    }
    await sleep(100);
    await this.t.close();
    for (const n of this.namespaces) await run('ip', ['netns', 'del', n]);
  }

  /** what a run left behind: namespaces, TAPs, domain processes */
  async leftovers(): Promise<string[]> {
    const out: string[] = [];
    const ns = await run('ip', ['netns', 'list']);
    for (const n of this.namespaces) if (ns.stdout.split('\n').some((l) => l.split(' ')[0] === n)) out.push(`netns ${n}`);
    const links = await run('ip', ['-o', 'link', 'show']);
    for (const l of links.stdout.split('\n')) if (new RegExp(`\\brs${this.tag}(t|up)`).test(l)) out.push(`link ${l.trim().slice(0, 60)}`);
    const ps = await run('pgrep', ['-f', 'dist/test-domains/nettest.js']);
    for (const pid of ps.stdout.split('\n').filter(Boolean)) {
      const ppid = await run('ps', ['-o', 'ppid=', '-p', pid]);
      if (Number(ppid.stdout.trim()) === process.pid) out.push(`process ${pid}`);
    }
    return out;
  }
}
