// hv: the root of trust. It owns every frame and grant table, creates and kills domain
// processes, wires event channels and answers hypercalls. It parses no configuration: what to
// build comes from the control domain, one hypercall at a time, checked against the policy.
import { DOMID_MAX, GNTST } from '../../src/abi/grant.js';
import { Channel, safeClose, MAX_FDS_PER_MESSAGE, type ChannelCloseReason } from '../../src/hypercall/channel.js';
import { OP_NAMES, type GntCopyOp, type GntMapOp, type GntMapResult, type HvEvent, type OpName } from '../../src/hypercall/protocol.js';
import { native } from '../../src/native/index.js';
import { DomainRecord } from './domain.js';
import { EvtchnOpError, EvtchnService } from './evtchn.js';
import { GrantService } from './grant.js';
import { HwError } from './hw-link.js';
import { PciError, PciHost } from './pci-host.js';
import { bdfArg, parseAssign, parsePlatformInit } from './pci-validate.js';
import { Policy } from './policy.js';
import { bundleFor, checkVmArgv, qemuBinary, spawnDomain, spawnVm, KIND_RE, VmArgError } from './spawn.js';
import { confineArgs, confineLauncher, confineStrength, parseConfine } from './confine.js';
import { ArgError, bytes, list, obj, str, uint } from './validate.js';
import { HvCopyRing } from './copy-ring.js';
import { GNTCOPY_RING_SLOTS, GNTCOPY_RINGS_PER_DOMAIN } from '../../src/abi/gntcopy-ring.js';

export const MAX_IO_FRAMES = 4096;
export const MAX_GRANT_FRAMES = 32;
/** Stay well inside RLIMIT_NOFILE: hv holds one descriptor per frame of every domain. */
export const FRAME_BUDGET = 14000;
/** Protocol violations (malformed requests) tolerated before a domain is cut off. */
export const MAX_VIOLATIONS = 32;
/** Bundles in the domains folder that are not domains. */
const NOT_DOMAINS = ['hv', 'hw'];
/** The kind whose process is QEMU rather than one of our bundles. */
export const VM_KIND = 'vm';

class OpError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export interface HypervisorOptions {
  /** directories holding one bundled entry point per domain kind, searched in order */
  bundleDirs: string[];
  log: (line: string) => void;
  /** called once every domain is gone after hv_shutdown or the control domain's death */
  onShutdown?: () => void;
}

type Handler = (dom: DomainRecord, args: Record<string, unknown>, fds: number[]) => { result: unknown; fds?: number[]; closeAfter?: number[] };

export class Hypervisor {
  private readonly domains = new Map<number, DomainRecord>();
  private nextDomid = 1;
  private readonly policy: Policy;
  private readonly grants: GrantService;
  private readonly evtchn: EvtchnService;
  private readonly violations = new Map<number, number>();
  private readonly started = Date.now();
  private shuttingDown = false;
  private readonly handlers: Record<OpName, Handler>;
  /** The emulated PCI hardware, once dom0 described it (platform_init). */
  pci: PciHost | null = null;

  constructor(private readonly opts: HypervisorOptions) {
    this.policy = new Policy(opts.log);
    const lookup = (d: number) => this.domains.get(d);
    this.grants = new GrantService(lookup);
    this.evtchn = new EvtchnService(lookup, (dom, ev, fds) => this.post(dom, ev, fds, true));
    this.handlers = {
      boot_info: (d) => ({
        result: {
          domid: d.domid, name: d.name, kind: d.kind, privileged: d.privileged, ioFrames: d.frames.length,
          grantFrames: d.grantFrames, bootArgs: this.bootArgs.get(d.domid) ?? new Uint8Array(0),
        },
        fds: [d.grantFd],
      }),
      memory_frames: (d, a) => {
        const start = uint(a, 'start', d.frames.length);
        const count = uint(a, 'count', MAX_FDS_PER_MESSAGE);
        if (start + count > d.frames.length) throw new ArgError(`frames ${start}..${start + count - 1} exceed the domain's ${d.frames.length}`);
        return { result: { start, count }, fds: d.frames.slice(start, start + count) };
      },
      domain_create: (_d, a) => this.create(a),
      domain_unpause: (_d, a) => {
        const dom = this.need(uint(a, 'domid', DOMID_MAX));
        if (dom.state !== 'paused') throw new OpError('EINVAL', `dom${dom.domid} is ${dom.state}, not paused`);
        this.bootArgs.set(dom.domid, bytes(a, 'bootArgs', 48 * 1024));
        return { result: { pid: this.start(dom) } };
      },
      domain_destroy: (d, a) => {
        const target = this.need(uint(a, 'domid', DOMID_MAX));
        if (target === d) throw new OpError('EINVAL', 'the control domain cannot destroy itself; use hv_shutdown');
        this.kill(target, `destroyed by dom${d.domid}`);
        return { result: {} };
      },
      domain_shutdown: (d, a) => {
        const target = this.need(uint(a, 'domid', DOMID_MAX));
        if (target === d) throw new OpError('EINVAL', 'the control domain cannot shut itself down; use hv_shutdown');
        this.shutdownDomain(target, uint(a, 'timeoutMs', 60_000), `shut down by dom${d.domid}`);
        return { result: {} };
      },
      domain_list: () => ({ result: { domains: [...this.domains.values()].map((x) => x.info()) } }),
      gnttab_query_size: (d) => ({ result: { nrFrames: d.grantFrames, maxFrames: d.grantFrames } }),
      gnttab_map: (d, a) => this.gntMap(d, a),
      gnttab_unmap: (d, a) => {
        const handles = list(a, 'handles', 512).map((h, i) => {
          if (typeof h !== 'number' || !Number.isInteger(h) || h < 0) throw new ArgError(`handles[${i}] must be a handle number`);
          return h;
        });
        return { result: { statuses: handles.map((h) => this.grants.unmap(d, h)) } };
      },
      gnttab_copy: (d, a) => this.gntCopy(d, a),
      gnttab_copy_ring: (d) => {
        if (d.copyRings.length >= GNTCOPY_RINGS_PER_DOMAIN) throw new OpError('ENOSPC', `a domain holds at most ${GNTCOPY_RINGS_PER_DOMAIN} grant-copy rings`);
        const ring = new HvCopyRing(d, this.grants, (dom, why) => this.kill(dom, why));
        d.copyRings.push(ring);
        const [memfd] = ring.domainFds;
        return { result: { slots: GNTCOPY_RING_SLOTS }, fds: [...ring.domainFds], closeAfter: [memfd] };
      },
      evtchn_alloc_unbound: (d, a) => {
        const { port, rxFd } = this.evtchn.allocUnbound(d, uint(a, 'remoteDom', DOMID_MAX));
        return { result: { port }, fds: [rxFd] };
      },
      evtchn_bind_interdomain: (d, a) => {
        const r = this.evtchn.bindInterdomain(d, uint(a, 'remoteDom', DOMID_MAX), uint(a, 'remotePort', 0xffffffff));
        return { result: { port: r.port }, fds: [r.rxFd, r.txFd] };
      },
      evtchn_close: (d, a) => {
        this.evtchn.close(d, uint(a, 'port', 0xffffffff));
        return { result: {} };
      },
      evtchn_status: (d, a) => ({ result: this.evtchn.status(d, uint(a, 'port', 0xffffffff)) }),
      hv_info: () => ({
        result: { pid: process.pid, domains: this.domains.size, uptimeMs: Date.now() - this.started, denials: this.policy.denials },
      }),
      hv_shutdown: (d) => {
        setImmediate(() => this.shutdown(`requested by dom${d.domid}`));
        return { result: {} };
      },
      platform_init: (_d, a) => {
        if (this.pci !== null) throw new OpError('EEXIST', 'the PCI platform is already initialised');
        const host = parsePlatformInit(a);
        const hwBundle = bundleFor(this.opts.bundleDirs, 'hw');
        if (hwBundle === null) throw new OpError('ENOENT', `no hardware bundle (hw.js) in ${this.opts.bundleDirs.join(', ')}: run npm run build`);
        const pci = new PciHost(host, { hwBundle, domains: () => this.domains.values(), log: this.opts.log });
        this.pci = pci;
        this.grants.deviceMapper = { map: (m, g, ref, gfn, ro) => pci.deviceMap(m, g, ref, gfn, ro), unmap: (m, addr, released) => pci.deviceUnmap(m, addr, released) };
        this.opts.log(`hv: PCI platform: ${host.devices.length} devices, ${pci.platform.groups().length} IOMMU groups, IOMMU ${host.iommu.enabled ? `VT-d ${host.iommu.addressWidth}-bit` : 'off'}, hardware in hw (pid ${pci.hw.pid})`);
        return { result: { devices: host.devices.length, groups: pci.platform.groups().length, warnings: [] } };
      },
      pci_list: () => ({ result: { devices: this.needPci().list() } }),
      pci_assignable_add: (_d, a) => ({ result: { warnings: this.needPci().assignableAdd(bdfArg(a, 'bdf')) } }),
      pci_assignable_remove: (_d, a) => ({ result: { warnings: this.needPci().assignableRemove(bdfArg(a, 'bdf')) } }),
      pci_assignable_list: () => ({ result: { devices: this.needPci().platform.assignableList() } }),
      pci_assign: (_d, a) => {
        const pci = this.needPci();
        const target = this.need(uint(a, 'domid', DOMID_MAX));
        if (target.domid === 0) throw new OpError('EINVAL', 'the control domain holds no device (disaggregation policy)');
        return { result: pci.assign(target.domid, parseAssign(a), target) };
      },
      pci_release: (_d, a) => ({ result: { warnings: this.needPci().release(bdfArg(a, 'bdf')) } }),
      pci_faults: () => ({ result: this.needPci().faultLog() }),
      pci_device_open: (d, a) => this.needPci().open(d, bdfArg(a, 'bdf')),
      pci_config_read: (d, a) => {
        const bdf = bdfArg(a, 'bdf');
        const offset = uint(a, 'offset', 0xff);
        const size = accessSize(a);
        return { result: { value: this.needPci().platform.configRead(bdf, offset, size, d.domid) } };
      },
      pci_config_write: (d, a) => {
        const bdf = bdfArg(a, 'bdf');
        const offset = uint(a, 'offset', 0xff);
        const size = accessSize(a);
        const value = uint(a, 'value', 0xffffffff);
        const r = this.needPci().configWrite(bdf, offset, size, value, d.domid);
        return { result: r.dropped === undefined ? { applied: r.applied } : { applied: r.applied, dropped: r.dropped } };
      },
    };
  }

  private readonly bootArgs = new Map<number, Uint8Array>();

  /** Creates and starts the control domain (domid 0). */
  startControlDomain(kind: string, bootArgs: Uint8Array, memoryMiB = 256): DomainRecord {
    const dom = new DomainRecord(0, 'Domain-0', kind, true, memoryMiB, 0, 1);
    this.domains.set(0, dom);
    this.bootArgs.set(0, bootArgs);
    if (!bundleFor(this.opts.bundleDirs, kind)) throw new Error(`no bundle for control domain kind '${kind}' in ${this.opts.bundleDirs.join(', ')}`);
    this.start(dom);
    return dom;
  }

  /**
   * Attaches an in-process control domain (tests, embedding): returns the domain's end of a
   * fresh hypercall channel; hv serves the other end as domid 0.
   */
  attachControlDomain(): number {
    const dom = new DomainRecord(0, 'Domain-0', 'external', true, 0, 0, 1);
    this.domains.set(0, dom);
    const [hvEnd, domEnd] = native.seqpacketPair();
    this.serve(dom, hvEnd);
    dom.state = 'running';
    return domEnd;
  }

  list(): DomainRecord[] {
    return [...this.domains.values()];
  }

  private create(a: Record<string, unknown>) {
    const name = str(a, 'name', /^[A-Za-z0-9_.-]{1,63}$/, 'a domain name of 1-63 letters, digits, _ . -');
    const kind = str(a, 'kind', KIND_RE, 'a domain kind (lowercase letters, digits, -)');
    const memoryMiB = uint(a, 'memoryMiB', 65536);
    const ioFrames = uint(a, 'ioFrames', MAX_IO_FRAMES);
    const grantFrames = uint(a, 'grantFrames', MAX_GRANT_FRAMES);
    if (grantFrames < 1) throw new ArgError('grantFrames must be at least 1');
    if (NOT_DOMAINS.includes(kind)) throw new OpError('EINVAL', `'${kind}' is not a domain kind: hv and its hardware process run only as themselves`);
    let vmArgv: string[] | null = null;
    if (kind === VM_KIND) {
      vmArgv = checkVmArgv(obj(a.vm, 'vm').argv);
      if (qemuBinary() === null) throw new OpError('ENOSYS', 'a vm domain needs qemu-system-x86_64 on hv\'s PATH: apt-get install qemu-system-x86');
    } else if (a.vm !== undefined) throw new ArgError(`vm is only for kind '${VM_KIND}'`);
    else if (!bundleFor(this.opts.bundleDirs, kind)) throw new OpError('EINVAL', `unknown domain kind '${kind}' (no ${kind}.js in ${this.opts.bundleDirs.join(', ')})`);
    for (const d of this.domains.values())
      if (d.name === name && d.state !== 'dead') throw new OpError('EEXIST', `a domain named '${name}' exists (dom${d.domid})`);
    const used = [...this.domains.values()].reduce((n, d) => n + d.frames.length, 0);
    if (used + ioFrames > FRAME_BUDGET) throw new OpError('ENOSPC', `frame budget exhausted: ${used} of ${FRAME_BUDGET} frames in use, ${ioFrames} asked`);
    let domid: number;
    if (a.domid !== undefined) {
      domid = uint(a, 'domid', DOMID_MAX);
      if (domid === 0 || this.domains.has(domid)) throw new OpError('EEXIST', `domain id ${domid} is in use or reserved`);
    } else domid = this.allocDomid();
    const confine = a.confine === undefined ? null : parseConfine(a.confine);
    if (confine !== null && confineLauncher() === null) throw new OpError('ENOSYS', 'confinement asked for but native/build/Release/ringside-confine is missing: run `npm ci` or `npm run build:native`');
    const dom = new DomainRecord(domid, name, kind, false, memoryMiB, ioFrames, grantFrames);
    dom.confine = confine;
    dom.vmArgv = vmArgv;
    this.domains.set(domid, dom);
    this.pci?.domainCreated(dom);
    this.opts.log(`hv: created dom${domid} '${name}' kind=${kind} memory=${memoryMiB}MiB frames=${ioFrames}`);
    return { result: { domid } };
  }

  private allocDomid(): number {
    for (let i = 0; i < DOMID_MAX; i++) {
      const d = this.nextDomid;
      this.nextDomid = this.nextDomid >= DOMID_MAX ? 1 : this.nextDomid + 1;
      if (!this.domains.has(d)) return d;
    }
    throw new OpError('ENOSPC', 'no free domain ids');
  }

  private start(dom: DomainRecord): number {
    if (dom.vmArgv !== null) return this.startVm(dom, dom.vmArgv);
    const bundle = bundleFor(this.opts.bundleDirs, dom.kind)!;
    const [hvEnd, childEnd] = native.seqpacketPair();
    const confine = dom.confine === null ? undefined : { launcher: confineLauncher() as string, args: confineArgs(dom.confine, this.opts.bundleDirs) };
    const child = spawnDomain({ bundle, name: dom.name, domid: dom.domid, memoryMiB: dom.memoryMiB, channelFd: childEnd, log: this.opts.log, confine });
    if (dom.confine !== null) {
      const c = dom.confine;
      const where = `${c.netns ? `, netns ${c.netns}` : ''}${c.sockDir ? `, sockets in ${c.sockDir}` : ''}`;
      this.opts.log(`hv: dom${dom.domid} '${dom.name}' confined: ${c.rw.length} rw, ${c.ro.length} ro${where}, ${c.netAdmin ? 'CAP_NET_ADMIN only' : 'no capabilities'}; ${confineStrength(confine?.launcher as string)}`);
    }
    native.close(childEnd);
    dom.proc = child;
    dom.pid = child.pid ?? null;
    dom.state = 'running';
    dom.startedAt = Date.now();
    this.serve(dom, hvEnd);
    child.on('exit', (code, signal) => this.onExit(dom, code, signal));
    child.on('error', (e) => this.opts.log(`hv: dom${dom.domid} '${dom.name}' failed to start: ${e.message}`));
    return dom.pid ?? -1;
  }

  /** A VM: QEMU under ringside-confine, with no hypercall channel; it dies as any domain does. */
  private startVm(dom: DomainRecord, argv: string[]): number {
    const confine = dom.confine === null ? undefined : { launcher: confineLauncher() as string, args: confineArgs(dom.confine, []) };
    const child = spawnVm({ qemu: qemuBinary() as string, argv, name: dom.name, domid: dom.domid, log: this.opts.log, confine });
    if (dom.confine !== null) {
      const c = dom.confine;
      this.opts.log(`hv: dom${dom.domid} '${dom.name}' (QEMU) confined: ${c.rw.length} rw, ${c.ro.length} ro${c.sockDir ? `, sockets in ${c.sockDir}` : ''}, no capabilities; ${confineStrength(confine?.launcher as string)}`);
    }
    dom.proc = child;
    dom.pid = child.pid ?? null;
    dom.state = 'running';
    dom.startedAt = Date.now();
    child.on('exit', (code, signal) => this.onExit(dom, code, signal));
    child.on('error', (e) => this.opts.log(`hv: dom${dom.domid} '${dom.name}' failed to start: ${e.message}`));
    return dom.pid ?? -1;
  }

  private serve(dom: DomainRecord, fd: number): void {
    dom.channel = new Channel(
      fd,
      ({ msg, fds }) => this.dispatch(dom, msg, fds),
      (reason) => this.onChannelClosed(dom, reason),
    );
  }

  private dispatch(dom: DomainRecord, msg: unknown, fds: number[]): void {
    // hv accepts no descriptors from domains: drop any a domain tries to push on us.
    for (const f of fds) safeClose(f);
    if (dom.state === 'dead' || dom.state === 'dying') return;
    let id = -1;
    try {
      const m = obj(msg, 'hypercall');
      if (typeof m.id !== 'number' || !Number.isInteger(m.id) || m.id < 0) throw new ArgError('hypercall id must be a non-negative integer');
      id = m.id;
      if (typeof m.op !== 'string' || !(OP_NAMES as readonly string[]).includes(m.op))
        throw new OpError('ENOSYS', `unknown hypercall ${JSON.stringify(String(m.op).slice(0, 40))}`);
      const op = m.op as OpName;
      const args = obj(m.args ?? {}, 'args');
      const denied = this.policy.check(op, dom.caller);
      if (denied) throw new OpError('EPERM', denied);
      const out = this.handlers[op](dom, args, []);
      dom.channel?.send({ id, ok: true, result: out.result }, out.fds ?? [], out.closeAfter ?? []);
    } catch (e) {
      const known = e instanceof OpError || e instanceof ArgError || e instanceof VmArgError || e instanceof EvtchnOpError || e instanceof PciError || e instanceof HwError;
      const code = known ? e.code : 'EINVAL';
      const message = e instanceof Error ? e.message : String(e);
      if (!known) this.opts.log(`hv: internal error serving dom${dom.domid}: ${(e as Error).stack ?? message}`);
      this.violation(dom, `${code}: ${message}`);
      if (id >= 0) dom.channel?.send({ id, ok: false, code, message });
    }
  }

  private violation(dom: DomainRecord, what: string): void {
    const n = (this.violations.get(dom.domid) ?? 0) + 1;
    this.violations.set(dom.domid, n);
    this.opts.log(`hv: dom${dom.domid} (${dom.name}) bad hypercall: ${what}`);
    if (n >= MAX_VIOLATIONS && !dom.privileged) this.kill(dom, `cut off after ${n} bad hypercalls`);
  }

  private gntMap(d: DomainRecord, a: Record<string, unknown>) {
    const ops = list(a, 'ops', MAX_FDS_PER_MESSAGE).map((o, i): GntMapOp => {
      const x = obj(o, `ops[${i}]`);
      return { dom: uint(x, 'dom', DOMID_MAX), ref: uint(x, 'ref', 0xffffffff), flags: uint(x, 'flags', 0xffffffff) };
    });
    const results: GntMapResult[] = [];
    const fds: number[] = [];
    const closeAfter: number[] = [];
    for (const op of ops) {
      if (this.policy.check('gnttab_map', d.caller, { targetDom: op.dom })) {
        results.push({ status: GNTST.permission_denied, handle: 0, fdIndex: -1, readonly: false });
        continue;
      }
      const r = this.grants.map(d, op);
      if (r.fd >= 0) {
        r.result.fdIndex = fds.length;
        fds.push(r.fd);
        if (r.ownFd) closeAfter.push(r.fd);
      }
      results.push(r.result);
    }
    return { result: { results }, fds, closeAfter };
  }

  private gntCopy(d: DomainRecord, a: Record<string, unknown>) {
    const ptr = (x: Record<string, unknown>) => ({ ref: uint(x, 'ref', 0xffffffff), domid: uint(x, 'domid', 0xffff), offset: uint(x, 'offset', 0xffff) });
    const ops = list(a, 'ops', 512).map((o, i): GntCopyOp => {
      const x = obj(o, `ops[${i}]`);
      return { source: ptr(obj(x.source, 'source')), dest: ptr(obj(x.dest, 'dest')), len: uint(x, 'len', 0xffff), flags: uint(x, 'flags', 0xffff) };
    });
    d.copyBatches++;
    d.copyOps += ops.length;
    const statuses = ops.map((op) => {
      for (const p of [op.source, op.dest])
        if (this.policy.check('gnttab_copy', d.caller, { targetDom: p.domid === 0x7ff0 ? d.domid : p.domid })) return GNTST.permission_denied;
      return this.grants.copy(d, op);
    });
    return { result: { statuses } };
  }

  private needPci(): PciHost {
    if (this.pci === null) throw new OpError('ENODEV', 'the PCI platform is not initialised (dom0 calls platform_init first)');
    return this.pci;
  }

  private need(domid: number): DomainRecord {
    const d = this.domains.get(domid);
    if (!d || d.state === 'dead') throw new OpError('ESRCH', `no domain ${domid}`);
    return d;
  }

  private post(dom: DomainRecord, ev: HvEvent, fds: number[] = [], closeFds = false): void {
    if (!dom.channel || dom.channel.isClosed) {
      if (closeFds) for (const f of fds) safeClose(f);
      return;
    }
    // Event fds are duplicates we own for the transfer only.
    const dups = closeFds ? fds.map((f) => native.dup(f)) : fds;
    dom.channel.send(ev, dups, closeFds);
  }

  /**
   * SCHEDOP_shutdown's counterpart: asks the domain to stop (SIGTERM, so it can tear down its
   * TAPs and exports) and destroys it if it has not exited within `timeoutMs`.
   */
  shutdownDomain(dom: DomainRecord, timeoutMs: number, reason: string): void {
    if (dom.state === 'dead' || dom.state === 'dying') return;
    if (!dom.proc || dom.proc.exitCode !== null || dom.proc.signalCode !== null) return this.kill(dom, reason);
    dom.deathReason ??= reason;
    this.opts.log(`hv: asking dom${dom.domid} (${dom.name}) to shut down: ${reason}`);
    dom.proc.kill('SIGTERM');
    setTimeout(() => {
      if (this.domains.get(dom.domid) === dom && dom.state !== 'dead') this.kill(dom, `${reason}; did not stop within ${timeoutMs} ms`);
    }, timeoutMs).unref();
  }

  /** Kills a domain's process; resources are released when it has exited. */
  kill(dom: DomainRecord, reason: string): void {
    if (dom.state === 'dead') return;
    dom.deathReason ??= reason;
    this.opts.log(`hv: killing dom${dom.domid} (${dom.name}): ${reason}`);
    if (dom.proc && dom.proc.exitCode === null && dom.proc.signalCode === null) {
      dom.state = 'dying';
      dom.proc.kill('SIGKILL');
      this.killGroup(dom);
    } else {
      this.reap(dom, null, null);
    }
  }

  private onChannelClosed(dom: DomainRecord, reason: ChannelCloseReason): void {
    if (dom.state === 'dead') return;
    if (reason.kind === 'error') this.kill(dom, `hypercall channel: ${reason.message}`);
    else if (!dom.proc) this.reap(dom, null, null); // in-process control domain went away
    // A process that closed its channel is about to exit; onExit does the rest.
  }

  private onExit(dom: DomainRecord, code: number | null, signal: NodeJS.Signals | null): void {
    this.reap(dom, code, signal);
  }

  /** A confined domain's process group: whatever it forked goes with it. */
  private killGroup(dom: DomainRecord): void {
    if ((dom.confine === null && dom.vmArgv === null) || dom.pid === null) return;
    try {
      process.kill(-dom.pid, 'SIGKILL');
    } catch {
      // no member left
    }
  }

  private reap(dom: DomainRecord, code: number | null, signal: string | null): void {
    if (dom.state === 'dead') return;
    dom.state = 'dead';
    this.killGroup(dom);
    const reason = dom.deathReason ?? (signal ? `killed by ${signal}` : `exited with code ${code}`);
    this.opts.log(`hv: dom${dom.domid} (${dom.name}) is dead: ${reason}`);
    for (const r of dom.copyRings.splice(0)) r.close();
    this.grants.unmapAll(dom);
    this.evtchn.closeAll(dom);
    this.grants.forgetGrantor(dom.domid);
    // before its frames go: its devices stop and nobody's devices reach its memory
    this.pci?.onDomainDead(dom.domid);
    dom.channel?.close();
    dom.release();
    this.domains.delete(dom.domid);
    this.bootArgs.delete(dom.domid);
    this.violations.delete(dom.domid);
    const dom0 = this.domains.get(0);
    if (dom.domid === 0) {
      if (!this.shuttingDown) this.shutdown('the control domain died');
    } else if (dom0 && !this.shuttingDown) {
      this.post(dom0, { event: 'domain_died', domid: dom.domid, name: dom.name, code, signal, reason });
    }
    if (this.shuttingDown && this.domains.size === 0) this.finish();
  }

  /** Kills every domain, the control domain last. */
  shutdown(why: string): void {
    if (this.shuttingDown) return;
    this.shuttingDown = true;
    this.opts.log(`hv: shutting down: ${why}`);
    const others = [...this.domains.values()].filter((d) => d.domid !== 0);
    for (const d of others) this.kill(d, 'hv shutdown');
    const dom0 = this.domains.get(0);
    if (dom0) this.kill(dom0, 'hv shutdown');
    if (this.domains.size === 0) this.finish();
  }

  /** Every domain is gone: the hardware stops with them. */
  private finish(): void {
    this.pci?.close();
    this.opts.onShutdown?.();
  }
}

function accessSize(a: Record<string, unknown>): 1 | 2 | 4 {
  const size = uint(a, 'size', 4);
  if (size !== 1 && size !== 2 && size !== 4) throw new ArgError(`size must be 1, 2 or 4, got ${size}`);
  return size;
}
