// The emulated PCI hardware as hv runs it: the platform (ownership, assignment rules, config
// space), one VT-d unit whose tables live in hv's memory, an IOMMU domain per driver domain (its
// own frames at iova = gfn << 12, as Xen maps a domain's memory, plus device_map grants in a
// window above 4 GiB), the device models with their register pages, and fault attribution.
// The device models themselves live in iommu/devices; this file only hosts them.
import { existsSync, fstatSync, ftruncateSync, openSync, closeSync, constants } from 'node:fs';
import { formatBdf, sourceId, type Bdf } from '../../src/config/bdf.js';
import type { HostConfig, HostDevice } from '../../src/config/host.js';
import type { PciDeviceView, PciFault, PciFaultRecord, PciOpenResult } from '../../src/hypercall/pci.js';
import { IommuDomains, PciPlatform, VtdUnit, faultReasonText, type AssignOptions, type AssignRequest, type FaultInfo } from '../../iommu/index.js';
import { NvmeModel } from '../../iommu/devices/nvme.js';
import { NVME_BAR_SIZE } from '../../iommu/devices/nvme-abi.js';
import { NicModel, TapWire, cable } from '../../iommu/devices/nic.js';
import { NIC_BAR_SIZE } from '../../iommu/devices/nic-abi.js';
import { RegisterTransport } from '../../iommu/devices/transport.js';
import { HvDmaMemory, framePa } from './dma-memory.js';
import type { DomainRecord } from './domain.js';

export class PciError extends Error {
  constructor(
    readonly code: 'EINVAL' | 'EPERM' | 'EBUSY' | 'ENOENT' | 'ENOSPC',
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

interface Medium {
  fd: number;
  size: number;
  readonly: boolean;
  /** medium transfers in flight (the NVMe model counts them): the fd closes only at 0 */
  busy?: number;
  onIdle?: (() => void) | null;
}

interface Hosted {
  dev: HostDevice;
  key: string;
  transport: RegisterTransport;
  model: NvmeModel | NicModel;
  medium?: Medium;
  tap?: TapWire;
}

interface GrantWindow {
  next: number;
  free: number[];
  byIova: Map<number, { grantor: number; ref: number }>;
}

export class PciHost {
  readonly mem: HvDmaMemory;
  readonly unit: VtdUnit | null;
  readonly iommu: IommuDomains | null;
  readonly platform: PciPlatform;
  readonly faults: PciFault[] = [];
  readonly records: PciFaultRecord[] = [];
  private readonly hosted = new Map<string, Hosted>();
  private readonly ownMapped = new Set<number>();
  private readonly windows = new Map<number, GrantWindow>();
  private drainScheduled = false;

  constructor(
    host: HostConfig,
    lookup: (domid: number) => DomainRecord | undefined,
    private readonly log: (line: string) => void,
  ) {
    this.mem = new HvDmaMemory(lookup);
    if (host.iommu.enabled) {
      this.unit = new VtdUnit(this.mem, {
        addressWidth: host.iommu.addressWidth,
        cachingMode: host.iommu.cachingMode,
        log: (m) => log(`hv: ${m}`),
        onFault: (f) => this.onFault(f),
      });
      this.iommu = new IommuDomains(this.unit, this.mem, this.mem.tables, { queued: true });
    } else {
      this.unit = null;
      this.iommu = null;
    }
    this.platform = new PciPlatform(host, { log: (m) => log(`hv: ${m}`), ...(this.iommu ? { iommu: this.iommu } : {}) });
    if (this.platform.topology.orphans.length > 0) throw new PciError('EINVAL', `devices below missing bridges: ${this.platform.topology.orphans.join(', ')}`);
    try {
      for (const dev of host.devices) {
        if (dev.type !== 'nvme' && dev.type !== 'nic') continue;
        const h = this.host(dev);
        this.hosted.set(h.key, h);
      }
      for (const h of this.hosted.values()) if (h.dev.wire?.kind === 'cable') this.recable(h);
    } catch (e) {
      this.close();
      throw e;
    }
  }

  // ---- dom0's operations ----

  list(): PciDeviceView[] {
    return this.platform.list();
  }

  assign(domid: number, reqs: AssignRequest[], dom: DomainRecord, opts: AssignOptions = {}) {
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
          warnings.push(`RMRR page 0x${iova.toString(16)} of ${m.bdf} not mapped: ${(e as Error).message}`);
          break;
        }
      }
    }
    for (const k of r.devices) this.renew(k);
    return { devices: r.devices, warnings, resets: r.resets };
  }

  release(bdf: Bdf): string[] {
    const r = this.platform.release(bdf);
    if (!r.ok) throw new PciError('EINVAL', r.error);
    this.renew(formatBdf(bdf));
    return r.warnings;
  }

  assignableAdd(bdf: Bdf): string[] {
    const r = this.platform.assignableAdd(bdf);
    if (!r.ok) throw new PciError('EINVAL', r.error);
    return r.warnings;
  }

  assignableRemove(bdf: Bdf): string[] {
    const r = this.platform.assignableRemove(bdf);
    if (!r.ok) throw new PciError('EINVAL', r.error);
    return r.warnings;
  }

  // ---- the owner's operations ----

  open(dom: DomainRecord, bdf: Bdf): { result: PciOpenResult; fds: number[] } {
    const key = formatBdf(bdf);
    const h = this.hosted.get(key);
    const o = this.platform.ownerOf(bdf);
    if (h === undefined || o === undefined) throw new PciError('ENOENT', `no PCI device ${key} on this platform`);
    if (o.kind !== 'domain' || o.domid !== dom.domid) throw new PciError('EPERM', `${key} is not assigned to dom${dom.domid} (owner: ${o.kind === 'domain' ? `dom${o.domid}` : o.kind})`);
    const fds = [h.transport.barFd, h.transport.doorbellFd, h.transport.irqFd];
    if (h.model instanceof NvmeModel) {
      const m = h.medium as Medium;
      return { result: { kind: 'nvme', barSize: NVME_BAR_SIZE, blocks: Math.floor(m.size / 512), blockSize: 512, readonly: m.readonly }, fds };
    }
    return { result: { kind: 'nic', barSize: NIC_BAR_SIZE, mac: macOf(h.dev), linkUp: h.model.wire.linkUp }, fds };
  }

  // ---- grants mapped with GNTMAP_device_map ----

  /** Puts a granted frame into the mapper's IOMMU domain; its bus address, or -1 when there is no room. */
  deviceMap(mapper: number, grantor: number, ref: number, gfn: number, readonly: boolean): number {
    const iommu = this.iommu;
    if (iommu === null) return -1;
    let w = this.windows.get(mapper);
    if (w === undefined) {
      w = { next: 0, free: [], byIova: new Map() };
      this.windows.set(mapper, w);
    }
    const slot = w.free.pop() ?? (w.next < GRANT_SLOTS ? w.next++ : -1);
    if (slot < 0) return -1;
    const iova = GRANT_WINDOW + slot * 4096;
    iommu.map(mapper, iova, framePa(grantor, gfn), { read: true, write: !readonly });
    w.byIova.set(iova, { grantor, ref });
    return iova;
  }

  /** Removes the entry and invalidates the IOTLB before the grant itself is released. */
  deviceUnmap(mapper: number, iova: number): void {
    const w = this.windows.get(mapper);
    if (w === undefined || this.iommu === null) return;
    this.iommu.unmap(mapper, iova);
    w.byIova.delete(iova);
    w.free.push((iova - GRANT_WINDOW) / 4096);
  }

  /** A domain is gone: its devices go back to quarantine, and nobody's devices reach its frames. */
  onDomainDead(domid: number): void {
    for (const k of this.platform.releaseDomain(domid)) this.renew(k);
    if (this.iommu !== null) {
      for (const [mapper, w] of this.windows) {
        for (const [iova, g] of w.byIova) {
          if (g.grantor !== domid) continue;
          // the slot stays taken until the mapper unmaps its handle
          this.iommu.unmap(mapper, iova);
          w.byIova.delete(iova);
        }
      }
      this.windows.delete(domid);
      // context entries cleared, caches invalidated, then its table frames are reused
      this.iommu.destroy(domid);
    }
    this.ownMapped.delete(domid);
    // hv's mapping of its frames goes once no medium transfer into them is in flight
    this.mem.domainDead(domid);
  }

  close(): void {
    for (const h of this.hosted.values()) {
      h.model.close();
      h.transport.close();
      h.tap?.close();
      const m = h.medium;
      if (m) {
        // a transfer still on the threadpool must not meet a reused descriptor: close after it
        if ((m.busy ?? 0) > 0) m.onIdle = () => closeQuietly(m.fd);
        else closeQuietly(m.fd);
      }
    }
    this.hosted.clear();
    this.mem.close();
  }

  // ---- internals ----

  private host(dev: HostDevice): Hosted {
    const key = formatBdf(dev.bdf);
    const h = { dev, key } as Hosted;
    if (dev.type === 'nvme') h.medium = openMedium(dev);
    if (dev.wire?.kind === 'tap') {
      try {
        h.tap = TapWire.open(dev.wire.name);
      } catch (e) {
        this.log(`hv: ${key}: cannot open TAP ${dev.wire.name} (${(e as Error).message}); the NIC's link stays down`);
      }
    }
    this.build(h);
    return h;
  }

  /** A fresh model and register page: after a reset, and whenever the owner changes. */
  private renew(key: string): void {
    const h = this.hosted.get(key);
    if (h === undefined) return;
    h.model.close();
    h.transport.close();
    this.build(h);
    if (h.dev.wire?.kind === 'cable') this.recable(h);
  }

  private build(h: Hosted): void {
    const unit = this.unit;
    const sid = sourceId(h.dev.bdf);
    const cfg = this.platform.configSpace(h.dev.bdf);
    const busMaster = () => cfg?.busMaster ?? false;
    const size = h.dev.type === 'nvme' ? NVME_BAR_SIZE : NIC_BAR_SIZE;
    let model: NvmeModel | NicModel | null = null;
    const transport = new RegisterTransport(h.key, size, () => model?.kick());
    const log = (m: string) => this.log(`hv: ${h.key} ${m}`);
    const raiseIrq = () => transport.raiseIrq();
    if (unit === null) {
      // without an IOMMU nothing is ever assigned: the device exists but is never opened
      model = new NicModel({ unit: new VtdUnit(this.mem), mem: this.mem, sid, bar: transport.bar, mac: new Uint8Array(6), busMaster: () => false, raiseIrq, log });
    } else if (h.dev.type === 'nvme') {
      model = new NvmeModel({ unit, mem: this.mem, sid, bar: transport.bar, medium: h.medium as Medium, busMaster, raiseIrq, log });
    } else {
      const nic = new NicModel({ unit, mem: this.mem, sid, bar: transport.bar, mac: macBytes(macOf(h.dev)), busMaster, raiseIrq, log });
      h.tap?.plug(nic);
      model = nic;
    }
    h.transport = transport;
    h.model = model;
  }

  private recable(h: Hosted): void {
    if (h.dev.wire?.kind !== 'cable') return;
    const peer = this.hosted.get(formatBdf(h.dev.wire.peer));
    if (peer && h.model instanceof NicModel && peer.model instanceof NicModel) cable(h.model, peer.model);
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
      setImmediate(() => this.drain());
    }
  }

  /** hv's fault interrupt handler: read and clear the fault recording registers. */
  private drain(): void {
    this.drainScheduled = false;
    if (this.iommu === null) return;
    const { faults, overflow } = this.iommu.driver.drainFaults();
    for (const r of faults) {
      this.records.push({ at: Date.now(), sid: r.sid, address: Number(r.address), reason: r.reason, write: r.write });
      if (this.records.length > FAULT_LOG) this.records.shift();
    }
    if (overflow) this.log('hv: IOMMU fault records overflowed (PFO): some faults were not recorded');
  }
}

function openMedium(dev: HostDevice): Medium {
  const path = dev.medium as string;
  try {
    if (!existsSync(path)) {
      if (dev.sizeBytes === undefined) throw new PciError('ENOENT', `${formatBdf(dev.bdf)}: medium ${path} does not exist and no size= says how big to create it`);
      const fd = openSync(path, constants.O_RDWR | constants.O_CREAT | constants.O_EXCL, 0o600);
      ftruncateSync(fd, dev.sizeBytes);
      return { fd, size: dev.sizeBytes, readonly: false };
    }
    let fd: number;
    let ro = false;
    try {
      fd = openSync(path, constants.O_RDWR);
    } catch {
      fd = openSync(path, constants.O_RDONLY);
      ro = true;
    }
    const st = fstatSync(fd);
    if (!st.isFile() && !st.isBlockDevice()) {
      closeSync(fd);
      throw new PciError('EINVAL', `${formatBdf(dev.bdf)}: medium ${path} is not a regular file`);
    }
    return { fd, size: st.size, readonly: ro };
  } catch (e) {
    if (e instanceof PciError) throw e;
    throw new PciError('EINVAL', `${formatBdf(dev.bdf)}: cannot open medium ${path}: ${(e as Error).message}`);
  }
}

function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // already gone
  }
}

/** A NIC without mac= gets a stable locally administered one from its BDF. */
function macOf(dev: HostDevice): string {
  if (dev.mac) return dev.mac;
  const h = (n: number) => n.toString(16).padStart(2, '0');
  return `02:52:53:${h(dev.bdf.bus)}:${h(dev.bdf.dev)}:${h(dev.bdf.fn)}`;
}

function macBytes(mac: string): Uint8Array {
  return Uint8Array.from(mac.split(':').map((x) => parseInt(x, 16)));
}

function sidText(sid: number): string {
  const h = (n: number) => n.toString(16).padStart(2, '0');
  return `0000:${h(sid >> 8)}:${h((sid >> 3) & 0x1f)}.${sid & 7}`;
}
