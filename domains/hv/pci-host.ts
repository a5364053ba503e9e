// The PCI platform as hv runs it: the platform rules (ownership, assignment, config space), the
// IOMMU driver side (an IOMMU domain per driver domain: its own frames at iova = gfn << 12, as Xen
// maps a domain's memory, plus device_map grants in a window above 4 GiB), fault attribution, and
// the hardware process (hw) that runs the VT-d unit and the device models. hv writes the tables
// into memory it shares with hw and programs the unit through hw's registers; it never touches a
// device's data path, which runs between the owning domain and hw.
import { formatBdf, sourceId, type Bdf } from '../../src/config/bdf.js';
import type { HostConfig, HostDevice } from '../../src/config/host.js';
import type { PciDeviceView, PciFault, PciFaultRecord, PciOpenResult } from '../../src/hypercall/pci.js';
// straight from the modules, not the iommu/ barrel: hv's bundle then holds only what hv runs
import { IommuDomains } from '../../iommu/platform/iommu-domains.js';
import { PciPlatform, type AssignOptions, type AssignRequest } from '../../iommu/platform/platform.js';
import { faultReasonText } from '../../src/abi/vtd-fault-reasons.js';
import type { FaultInfo } from '../../src/hw/vtd/faults.js';
import { NVME_BAR_SIZE } from '../../src/abi/nvme.js';
import { NIC_BAR_SIZE } from '../../src/abi/nic.js';
import { native } from '../../src/native/index.js';
import { framePa } from '../../src/hw/phys-map.js';
import { FRAMES_PER_MESSAGE, HW_OP, INFO_LINK_UP, INFO_READONLY, STAT_FIELDS, type HwDeviceSpec, type HwInit, type HwStats } from '../../src/hw/wire.js';
import { HwError, HwLink } from './hw-link.js';
import { HvTableMemory } from './iommu-memory.js';
import { DrainWaiter } from './drain.js';
import { sizeThreadpool } from '../../src/hw/threadpool.js';
import { confineArgs, confineLauncher, confineStrength } from './confine.js';
import type { ConfineSpec } from '../../src/hypercall/protocol.js';
import { dirname } from 'node:path';
import type { DomainRecord } from './domain.js';

export class PciError extends Error {
  constructor(
    readonly code: 'EINVAL' | 'EPERM' | 'EBUSY' | 'ENOENT' | 'ENOSPC' | 'EIO',
    message: string,
  ) {
    super(message);
  }
}

/** device_map grants sit at GRANT_WINDOW + slot * 4 KiB in the mapper's IOMMU domain. */
export const GRANT_WINDOW = 2 ** 32;
const GRANT_SLOTS = 65536;
const FAULT_LOG = 256;
/** Pages of one RMRR region hv backs with reserved memory; bigger regions are refused. */
const MAX_RMRR_PAGES = 1024;

/** One DMA-capable function hw models, as hv keeps track of it. */
interface Hosted {
  dev: HostDevice;
  key: string;
  /** its place in hw's device list */
  index: number;
  /** the current register page, doorbell and interrupt descriptors: hw has them, the owner gets them */
  fds: number[];
  /** the command register's bus-master bit as hw last heard it */
  busMaster: boolean;
  medium?: { size: number; readonly: boolean };
}

interface GrantWindow {
  next: number;
  free: number[];
  byIova: Map<number, { grantor: number; ref: number; gfn: number }>;
}

export interface PciHostOptions {
  /** hw's bundled entry point */
  hwBundle: string;
  /** every domain alive now: hw gets their frames before any device can reach them */
  domains: () => Iterable<DomainRecord>;
  log: (line: string) => void;
}

export class PciHost {
  readonly mem: HvTableMemory;
  readonly hw: HwLink;
  readonly iommu: IommuDomains | null = null;
  readonly platform: PciPlatform;
  readonly faults: PciFault[] = [];
  readonly records: PciFaultRecord[] = [];
  private readonly hosted = new Map<string, Hosted>();
  private readonly ownMapped = new Set<number>();
  private readonly windows = new Map<number, GrantWindow>();
  /** device_map pages unmapped while hw may still move data into or out of them */
  private readonly drains = new DrainWaiter((pfn) => this.inFlight(pfn), (l) => this.log(l));
  private drainScheduled = false;
  private readonly log: (line: string) => void;

  constructor(host: HostConfig, opts: PciHostOptions) {
    this.log = opts.log;
    const log = opts.log;
    const specs: HwDeviceSpec[] = [];
    for (const dev of host.devices) {
      if (dev.type !== 'nvme' && dev.type !== 'nic') continue;
      const key = formatBdf(dev.bdf);
      this.hosted.set(key, { dev, key, index: specs.length, fds: [], busMaster: false });
      specs.push(hwSpec(dev));
    }
    const init: HwInit = { iommu: { ...host.iommu }, devices: specs };
    this.mem = new HvTableMemory();
    // hw runs every device model and touches every domain's memory: it starts confined like a
    // driver domain, reaching only its media (hv hands it its TAPs already open).
    const launcher = confineLauncher();
    const rules = hwConfine(specs);
    const confine = launcher === null ? undefined : { launcher, args: confineArgs(rules, [dirname(opts.hwBundle)]) };
    if (confine === undefined) log('hv: ringside-confine is not built: hw runs unconfined');
    else log(`hv: hw confined: ${rules.rw.length} rw; ${confineStrength(confine.launcher)}`);
    try {
      const threads = sizeThreadpool(specs.filter((d) => d.kind === 'nvme').length, { ...process.env });
      this.hw = new HwLink({ bundle: opts.hwBundle, ...(confine ? { confine } : {}), threads, log, onFault: (f) => this.onFault(f), onGone: (why) => this.onHwGone(why), onExit: () => this.onHwExit() });
    } catch (e) {
      this.mem.close();
      throw new PciError('EIO', `cannot start the hardware process: ${(e as Error).message}`);
    }
    try {
      this.hw.init(init, this.mem.fd);
      for (const h of this.hosted.values()) if (h.dev.wire?.kind === 'tap') this.plugTap(h, h.dev.wire.name);
      for (const d of opts.domains()) if (d.state !== 'dead') this.domainCreated(d);
      if (host.iommu.enabled) this.iommu = new IommuDomains(this.hw, this.mem, this.mem.tables, { queued: true });
      this.platform = new PciPlatform(host, { log: (m) => log(`hv: ${m}`), ...(this.iommu ? { iommu: this.iommu } : {}) });
      if (this.platform.topology.orphans.length > 0) throw new PciError('EINVAL', `devices below missing bridges: ${this.platform.topology.orphans.join(', ')}`);
      for (const h of this.hosted.values()) {
        this.renew(h.key);
        if (h.dev.type !== 'nvme') continue;
        const r = this.hw.call(HW_OP.DEVICE_INFO, h.index);
        h.medium = { size: r.num(0), readonly: (r.flags & INFO_READONLY) !== 0 };
      }
    } catch (e) {
      this.close();
      if (e instanceof HwError) throw new PciError(e.code, e.message);
      throw e;
    }
  }

  // ---- dom0's operations ----

  list(): PciDeviceView[] {
    this.catchUp();
    return this.platform.list();
  }

  /** The attributed faults and drained FRCD records, up to the last notice hw sent. */
  faultLog(): { faults: PciFault[]; records: PciFaultRecord[] } {
    this.catchUp();
    return { faults: [...this.faults], records: [...this.records] };
  }

  assign(domid: number, reqs: AssignRequest[], dom: DomainRecord, opts: AssignOptions = {}) {
    this.catchUp();
    this.needHw();
    const r = this.platform.assign(reqs, domid, opts);
    if (!r.ok) throw new PciError('EBUSY', r.error);
    const warnings = [...r.warnings];
    const iommu = this.iommu as IommuDomains;
    if (!this.ownMapped.has(domid)) {
      // the owner's memory, where its driver puts queues and buffers
      for (let gfn = 0; gfn < dom.frames.length; gfn++) iommu.map(domid, gfn * 4096, framePa(domid, gfn), { read: true, write: true });
      this.ownMapped.add(domid);
    }
    for (const m of r.identityMaps) {
      const pages = Number((m.end - m.start + 1n) / 4096n);
      if (pages > MAX_RMRR_PAGES) {
        warnings.push(`RMRR of ${m.bdf} (${pages} pages) is too large to back; its firmware DMA will fault`);
        continue;
      }
      for (let i = 0; i < pages; i++) {
        const iova = Number(m.start) + i * 4096;
        try {
          if (iommu.lookup(domid, iova) === null) iommu.map(domid, iova, this.mem.allocFirmware(), { read: true, write: true });
        } catch (e) {
          if (e instanceof HwError) throw e;
          warnings.push(`RMRR page 0x${iova.toString(16)} of ${m.bdf} not mapped: ${(e as Error).message}`);
          break;
        }
      }
    }
    for (const k of r.devices) this.renew(k);
    this.syncBusMaster();
    return { devices: r.devices, warnings, resets: r.resets };
  }

  release(bdf: Bdf): string[] {
    this.catchUp();
    this.needHw();
    const r = this.platform.release(bdf);
    if (!r.ok) throw new PciError('EINVAL', r.error);
    this.renew(formatBdf(bdf));
    this.syncBusMaster();
    return r.warnings;
  }

  assignableAdd(bdf: Bdf): string[] {
    this.needHw();
    const r = this.platform.assignableAdd(bdf);
    if (!r.ok) throw new PciError('EINVAL', r.error);
    this.syncBusMaster();
    return r.warnings;
  }

  assignableRemove(bdf: Bdf): string[] {
    this.needHw();
    const r = this.platform.assignableRemove(bdf);
    if (!r.ok) throw new PciError('EINVAL', r.error);
    this.syncBusMaster();
    return r.warnings;
  }

  // ---- the owner's operations ----

  open(dom: DomainRecord, bdf: Bdf): { result: PciOpenResult; fds: number[] } {
    this.needHw();
    const key = formatBdf(bdf);
    const h = this.hosted.get(key);
    const o = this.platform.ownerOf(bdf);
    if (h === undefined || o === undefined) throw new PciError('ENOENT', `no PCI device ${key} on this platform`);
    if (o.kind !== 'domain' || o.domid !== dom.domid) throw new PciError('EPERM', `${key} is not assigned to dom${dom.domid} (owner: ${o.kind === 'domain' ? `dom${o.domid}` : o.kind})`);
    const fds = [...h.fds];
    if (h.medium !== undefined) {
      const m = h.medium;
      return { result: { kind: 'nvme', barSize: NVME_BAR_SIZE, blocks: Math.floor(m.size / 512), blockSize: 512, readonly: m.readonly }, fds };
    }
    const linkUp = (this.hw.call(HW_OP.DEVICE_INFO, h.index).flags & INFO_LINK_UP) !== 0;
    return { result: { kind: 'nic', barSize: NIC_BAR_SIZE, mac: h.dev.mac as string, linkUp }, fds };
  }

  /** A config write by the owner (or the platform); hw hears the bus-master bit before the caller's reply. */
  configWrite(bdf: Bdf, off: number, size: 1 | 2 | 4, value: number, domid: number) {
    this.needHw();
    const r = this.platform.configWrite(bdf, off, size, value, domid);
    this.syncBusMaster();
    return r;
  }

  // ---- grants mapped with GNTMAP_device_map ----

  /** Puts a granted frame into the mapper's IOMMU domain; its bus address, or -1 when there is no room. */
  deviceMap(mapper: number, grantor: number, ref: number, gfn: number, readonly: boolean): number {
    const iommu = this.iommu;
    if (iommu === null || this.hw.gone !== null) return -1;
    let w = this.windows.get(mapper);
    if (w === undefined) {
      w = { next: 0, free: [], byIova: new Map() };
      this.windows.set(mapper, w);
    }
    // oldest freed slot first: a late fault on a just-freed slot is not pinned on its next user
    const slot = w.free.shift() ?? (w.next < GRANT_SLOTS ? w.next++ : -1);
    if (slot < 0) return -1;
    const iova = GRANT_WINDOW + slot * 4096;
    try {
      iommu.map(mapper, iova, framePa(grantor, gfn), { read: true, write: !readonly });
    } catch (e) {
      if (!(e instanceof HwError)) throw e;
      // the entry may be in the table; without hardware nothing reads it, and the slot stays taken
      return -1;
    }
    w.byIova.set(iova, { grantor, ref, gfn });
    return iova;
  }

  /**
   * Removes the entry and invalidates the IOTLB; `released` runs once no transfer translated
   * before that touches the frame, and only then may the grant itself be released.
   */
  deviceUnmap(mapper: number, iova: number, released: () => void): void {
    this.catchUp();
    const w = this.windows.get(mapper);
    if (w === undefined || this.iommu === null) return released();
    // the table entry goes before the invalidation, so a lost hw leaves nothing to reach it
    this.whileHw(() => this.iommu?.unmap(mapper, iova));
    const g = w.byIova.get(iova);
    w.byIova.delete(iova);
    w.free.push((iova - GRANT_WINDOW) / 4096);
    if (g === undefined) return released(); // its grantor died: nothing of it is left to hand back
    this.drains.after(framePa(g.grantor, g.gfn) / 4096, released);
  }

  /** A domain exists: hw gets its frames before it runs, so its devices can reach them. */
  domainCreated(dom: DomainRecord): void {
    if (this.hw.gone !== null) return;
    // No device ever owns or device_maps the control domain's or xenstored's memory: hw, which
    // runs every device model, is not given it at all.
    if (dom.privileged || dom.kind === 'xenstored') return;
    const n = dom.frames.length;
    try {
      for (let start = 0; start === 0 || start < n; start += FRAMES_PER_MESSAGE) {
        this.hw.call(HW_OP.DOMAIN_FRAMES, dom.domid, n, start, 0n, dom.frames.slice(start, start + FRAMES_PER_MESSAGE));
      }
    } catch (e) {
      if (!(e instanceof HwError)) throw e;
      this.log(`hv: hw did not take the frames of dom${dom.domid}: ${e.message}; its devices cannot reach them`);
    }
  }

  /** A domain is gone: its devices go back to quarantine, and nobody's devices reach its frames. */
  onDomainDead(domid: number): void {
    this.catchUp();
    this.whileHw(() => {
      for (const k of this.platform.releaseDomain(domid)) this.renew(k);
      this.syncBusMaster();
    });
    if (this.iommu !== null) {
      const iommu = this.iommu;
      for (const [mapper, w] of this.windows) {
        for (const [iova, g] of w.byIova) {
          if (g.grantor !== domid) continue;
          // the slot stays taken until the mapper unmaps its handle
          this.whileHw(() => iommu.unmap(mapper, iova));
          w.byIova.delete(iova);
        }
      }
      this.windows.delete(domid);
      // context entries cleared, caches invalidated, then its table frames are reused
      this.whileHw(() => iommu.destroy(domid));
    }
    this.ownMapped.delete(domid);
    // hw's mapping of its frames goes once no medium transfer into them is in flight
    this.whileHw(() => this.hw.call(HW_OP.DOMAIN_DEAD, domid));
  }

  /** The unit's counters and hw's own, read from hw. */
  hwStats(): HwStats {
    this.needHw();
    const r = this.hw.call(HW_OP.STATS);
    const out = {} as HwStats;
    STAT_FIELDS.forEach((f, i) => (out[f] = r.num(i)));
    return out;
  }

  close(): void {
    this.hw?.close();
    this.drains.releaseAll();
    this.closeTransports();
    this.mem.close();
  }

  // ---- internals ----

  private needHw(): void {
    if (this.hw.gone !== null) throw new PciError('EIO', `the PCI hardware is gone (${this.hw.gone}); its devices cannot be used until the platform restarts`);
  }

  /**
   * Runs a step that talks to hw where hv must go on without it (a domain's death, a grant's
   * unmap): if hw is lost meanwhile, the step ends there and hv's own bookkeeping carries on.
   */
  private whileHw(step: () => unknown): void {
    if (this.hw.gone !== null) return;
    try {
      step();
    } catch (e) {
      if (!(e instanceof HwError)) throw e;
      this.log(`hv: PCI step skipped: ${e.message}`);
    }
  }

  private onHwGone(why: string): void {
    this.log(`hv: the PCI hardware is gone: ${why}; its devices are unusable, domains keep running`);
    // pages and drains are let go when hw's process has exited (onHwExit), not when hv gave up
    // on it: until then it may still be moving data
  }

  /**
   * hw's process is gone, so nothing moves data any more: every owner's register page reads
   * all-ones (a surprise-removed device, which the drivers take as "gone": they fail their
   * requests instead of waiting on a page nobody answers), their interrupts fire, and pages
   * held for a drain go back to their grantors.
   */
  private onHwExit(): void {
    for (const h of this.hosted.values()) {
      if (h.fds.length === 0) continue;
      try {
        const bar = new Uint8Array(native.mmap(h.fds[0], h.dev.type === 'nvme' ? NVME_BAR_SIZE : NIC_BAR_SIZE, true));
        bar.fill(0xff);
        native.munmap(bar.buffer as ArrayBuffer);
        native.eventfdSignal(h.fds[2]);
      } catch (e) {
        this.log(`hv: ${h.key}: cannot mark the device removed (${(e as Error).message})`);
      }
    }
    this.closeTransports();
    this.drains.releaseAll();
  }

  /** Medium transfers hw has in flight on a page; none once hw's process has exited. */
  private inFlight(pfn: number): number {
    if (this.hw.gone !== null) return this.hw.hasExited ? 0 : 1;
    try {
      return Number(this.hw.call(HW_OP.IN_FLIGHT, pfn).value);
    } catch (e) {
      // hw was given up on under the question: wait for its exit
      if (e instanceof HwError && this.hw.gone !== null) return this.hw.hasExited ? 0 : 1;
      throw e;
    }
  }

  private closeTransports(): void {
    for (const h of this.hosted.values()) {
      for (const fd of h.fds) native.close(fd);
      h.fds = [];
    }
  }

  /**
   * Notices hw sent and hv has not read yet, then the fault records they announced: before any
   * answer that reports faults, and before ownership or a grant slot changes, so each fault is
   * blamed on whoever owned the device and the slot when it happened.
   */
  private catchUp(): void {
    if (this.hw.gone !== null) return;
    this.hw.pump();
    if (this.drainScheduled) this.drain();
  }

  /**
   * A fresh register page, doorbell and interrupt (hw builds a fresh model on them): after a
   * reset, and whenever the owner changes, so a previous owner keeps only a dead page.
   */
  private renew(key: string): void {
    this.catchUp();
    const h = this.hosted.get(key);
    if (h === undefined) return;
    for (const fd of h.fds) native.close(fd);
    h.fds = [];
    const fds = [native.memfdCreate(`${key}-bar`, h.dev.type === 'nvme' ? NVME_BAR_SIZE : NIC_BAR_SIZE), native.eventfd(), native.eventfd()];
    h.fds = fds;
    this.hw.call(HW_OP.ATTACH, h.index, 0, 0, 0n, fds);
  }

  /**
   * Opens the host TAP a NIC is wired to and hands it to hw: hv is root, and hw holds no
   * CAP_NET_ADMIN over the host. A TAP that cannot be opened leaves the NIC's link down.
   */
  private plugTap(h: Hosted, name: string): void {
    let fd: number;
    try {
      fd = native.tapOpen(name, { vnetHdr: true }).fd;
    } catch (e) {
      this.log(`hv: ${h.key}: cannot open TAP ${name} (${(e as Error).message}); the NIC's link stays down`);
      return;
    }
    try {
      this.hw.call(HW_OP.TAP_WIRE, h.index, 0, 0, 0n, [fd]);
    } finally {
      native.close(fd); // hw has its own copy now
    }
  }

  /** Tells hw every bus-master bit that changed in config space (writes, resets). */
  private syncBusMaster(): void {
    for (const h of this.hosted.values()) {
      const on = this.platform.configSpace(h.dev.bdf)?.busMaster ?? false;
      if (on === h.busMaster) continue;
      this.hw.call(HW_OP.BUS_MASTER, h.index, on ? 1 : 0);
      h.busMaster = on;
    }
  }

  private onFault(f: FaultInfo): void {
    const a = this.platform.noteFault(f);
    const bdf = a?.bdf ?? sidText(f.sid);
    const o = a ? this.platform.ownerOf(a.bdf) : undefined;
    const domid = o?.kind === 'domain' ? o.domid : -1;
    const fault: PciFault = {
      at: Date.now(), bdf, sid: f.sid, domid, owner: a?.owner ?? 'unknown', iova: f.iova, reason: f.reason,
      reasonText: faultReasonText(f.reason), write: f.write, disposition: f.disposition,
    };
    const page = f.iova - (f.iova % 4096);
    const g = domid >= 0 ? this.windows.get(domid)?.byIova.get(page) : undefined;
    if (g !== undefined) fault.grant = { grantor: g.grantor, ref: g.ref, iova: page };
    this.faults.push(fault);
    if (this.faults.length > FAULT_LOG) this.faults.shift();
    const grant = g ? ` (device_map of dom${g.grantor} ref ${g.ref})` : '';
    this.log(`hv: IOMMU fault: ${bdf} of ${domid >= 0 ? `dom${domid}` : fault.owner} ${f.write ? 'write' : 'read'} at iova 0x${f.iova.toString(16)}${grant}: reason 0x${f.reason.toString(16)} ${fault.reasonText} [${f.disposition}]`);
    if (!this.drainScheduled) {
      this.drainScheduled = true;
      setImmediate(() => {
        if (this.drainScheduled) this.drain();
      });
    }
  }

  /** hv's fault interrupt handler: read and clear the fault recording registers. */
  private drain(): void {
    this.drainScheduled = false;
    const iommu = this.iommu;
    if (iommu === null) return;
    this.whileHw(() => {
      const { faults, overflow } = iommu.driver.drainFaults();
      for (const r of faults) {
        this.records.push({ at: Date.now(), sid: r.sid, address: Number(r.address), reason: r.reason, write: r.write });
        if (this.records.length > FAULT_LOG) this.records.shift();
      }
      if (overflow) this.log('hv: IOMMU fault records overflowed (PFO): some faults were not recorded');
    });
  }
}

/** The files hw may open: its media. TAPs come from hv already open, so no capability either. */
function hwConfine(specs: HwDeviceSpec[]): ConfineSpec {
  return { ro: [], rw: specs.flatMap((d) => (d.medium !== undefined ? [d.medium] : [])), netAdmin: false };
}

/** What hw needs to build one function: no config, only the facts of the silicon. */
function hwSpec(dev: HostDevice): HwDeviceSpec {
  const name = formatBdf(dev.bdf);
  const sid = sourceId(dev.bdf);
  if (dev.type === 'nvme') {
    const s: HwDeviceSpec = { sid, name, kind: 'nvme', medium: dev.medium as string };
    if (dev.sizeBytes !== undefined) s.sizeBytes = dev.sizeBytes;
    return s;
  }
  const w = dev.wire;
  const wire: HwDeviceSpec['wire'] = w?.kind === 'tap' ? { kind: 'tap', name: w.name } : w?.kind === 'cable' ? { kind: 'cable', peerSid: sourceId(w.peer) } : { kind: 'none' };
  return { sid, name, kind: 'nic', mac: [...macBytes(dev.mac as string)], wire, offloads: dev.offloads !== false };
}

function macBytes(mac: string): Uint8Array {
  return Uint8Array.from(mac.split(':').map((x) => parseInt(x, 16)));
}

function sidText(sid: number): string {
  const h = (n: number) => n.toString(16).padStart(2, '0');
  return `0000:${h(sid >> 8)}:${h((sid >> 3) & 0x1f)}.${sid & 7}`;
}
