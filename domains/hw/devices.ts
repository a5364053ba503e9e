// The PCI functions that do DMA, as hw runs them: each NVMe controller with its medium file, each
// NIC with its TAP or cable, a register transport per owner, and the bus-master bit hv's config
// space decides. Media and TAPs are the hardware's, so hw opens them; the device models
// themselves live in src/hw and are used as they are.
//
// One hw serves every domain's devices, so a device's failure stays that device's: an exception
// in a model's doorbell stops that model (its fatal status) and hw goes on serving the others.
import { native } from '../../src/native/index.js';
import { existsSync, fstatSync, ftruncateSync, openSync, closeSync, constants } from 'node:fs';
import { NvmeModel, type MediumIo, type NvmeMedium } from '../../src/hw/nvme.js';
import type { DmaMemory } from '../../src/hw/dma.js';
import { NVME_BAR_SIZE } from '../../src/abi/nvme.js';
import { NicModel, TapWire, cable } from '../../src/hw/nic.js';
import { NIC_BAR_SIZE } from '../../src/abi/nic.js';
import { VtdUnit } from '../../src/hw/vtd/unit.js';
import { DeviceTransport } from './transport.js';
import { HW_STATUS, type HwDeviceSpec, type HwInit, type HwStatus } from '../../src/hw/wire.js';

/** A refusal hw reports to hv with a status, so platform_init fails with the same words. */
export class HwRefusal extends Error {
  constructor(
    readonly status: HwStatus,
    message: string,
  ) {
    super(message);
  }
}

interface Device {
  spec: HwDeviceSpec;
  medium?: NvmeMedium;
  tap?: TapWire;
  transport: DeviceTransport | null;
  model: NvmeModel | NicModel | null;
  busMaster: boolean;
  /**
   * Replaced models whose transfers on the medium have not all returned. The current model's
   * enable waits until this is 0: the threadpool runs jobs in no order, so an old owner's write
   * could otherwise land over the new owner's data on the same blocks.
   */
  oldTransfers: number;
}

export interface HwDevicesOptions {
  /** the media's system calls; default node:fs (tests hold transfers back with a HeldMedium) */
  mediumIo?: MediumIo;
}

export class HwDevices {
  private readonly devices: Device[] = [];
  /** old owners' register pages waiting for their model's last transfer before they read all-ones */
  private readonly retiring = new Set<DeviceTransport>();
  private retired: (() => void) | null = null;

  constructor(
    private readonly init: HwInit,
    private readonly unit: VtdUnit,
    private readonly mem: DmaMemory,
    private readonly log: (line: string) => void,
    opts: HwDevicesOptions = {},
  ) {
    try {
      for (const spec of init.devices) {
        const d: Device = { spec, transport: null, model: null, busMaster: false, oldTransfers: 0 };
        // listed before opening, so close() finds whatever was opened when a later one fails
        this.devices.push(d);
        if (spec.kind === 'nvme') {
          d.medium = openMedium(spec);
          if (opts.mediumIo !== undefined) d.medium.io = opts.mediumIo;
        }
      }
    } catch (e) {
      this.close();
      throw e;
    }
  }

  /**
   * The TAP a NIC's wire names, opened by hv (hw holds no CAP_NET_ADMIN over the host). The
   * descriptor is ours from here on, whatever happens.
   */
  plugTap(index: number, fd: number): void {
    const d = this.devices[index];
    let tap: TapWire;
    try {
      if (d.spec.wire?.kind !== 'tap') throw new Error(`${d.spec.name} is not wired to a TAP`);
      if (d.tap !== undefined) throw new Error(`${d.spec.name} has its TAP already`);
      tap = new TapWire(fd);
    } catch (e) {
      native.close(fd);
      throw e;
    }
    d.tap = tap;
    if (d.model instanceof NicModel) tap.plug(d.model);
  }

  get count(): number {
    return this.devices.length;
  }

  /** A fresh model on a fresh register transport: after a reset, and whenever the owner changes. */
  attach(index: number, fds: number[]): void {
    const d = this.devices[index];
    const size = d.spec.kind === 'nvme' ? NVME_BAR_SIZE : NIC_BAR_SIZE;
    this.retire(d);
    let model: NvmeModel | NicModel | null = null;
    const transport = new DeviceTransport(fds[0], fds[1], fds[2], size, () => this.doorbell(d, model));
    try {
      model = this.newModel(d, transport);
    } catch (e) {
      transport.close();
      throw e;
    }
    d.transport = transport;
    d.model = model;
  }

  private newModel(d: Device, transport: DeviceTransport): NvmeModel | NicModel {
    let model: NvmeModel | NicModel;
    const o = {
      unit: this.unit,
      mem: this.mem,
      sid: d.spec.sid,
      bar: transport.bar,
      busMaster: () => d.busMaster,
      raiseIrq: () => transport.raiseIrq(),
      log: (m: string) => this.log(`${d.spec.name} ${m}`),
    };
    if (!this.init.iommu.enabled) {
      // without an IOMMU nothing is ever assigned: the device exists but never masters the bus
      model = new NicModel({ ...o, unit: new VtdUnit(this.mem), mac: new Uint8Array(6), busMaster: () => false });
    } else if (d.spec.kind === 'nvme') {
      model = new NvmeModel({ ...o, medium: d.medium as NvmeMedium, mediumFree: () => d.oldTransfers === 0 });
    } else {
      model = new NicModel({ ...o, mac: Uint8Array.from(d.spec.mac ?? [0, 0, 0, 0, 0, 0]), offloads: d.spec.offloads !== false });
    }
    try {
      if (model instanceof NicModel) d.tap?.plug(model);
      this.recable(d, model);
    } catch (e) {
      // a wire must not keep a model whose page is about to go
      model.close();
      throw e;
    }
    return model;
  }

  private doorbell(d: Device, m: NvmeModel | NicModel | null): void {
    if (m === null) return;
    try {
      m.kick();
    } catch (e) {
      const why = e instanceof Error ? e.message : String(e);
      this.log(`${d.spec.name}: device model failed (${why}): the device stops with a fatal status; hw serves the others`);
      try {
        m.failInternal(why);
      } catch {
        // not even its status could be set: it stops hearing doorbells all the same
        m.close();
      }
    }
  }

  /**
   * The device's current owner loses it (a fresh transport follows, or hw stops): its doorbells
   * go unheard at once, and once the model has no transfer in flight (never cut short: they move
   * the owner's memory) its page reads all-ones and its interrupt fires, so a driver waiting on it
   * learns the device is gone rather than waiting for a timeout. Until then the next model's
   * enable waits (oldTransfers), and it hears a doorbell once the wait is over.
   */
  private retire(d: Device): void {
    const m = d.model;
    const t = d.transport;
    d.model = null;
    d.transport = null;
    m?.close();
    if (t === null) return;
    t.silence();
    this.retiring.add(t);
    const gone = () => {
      this.retiring.delete(t);
      try {
        t.remove();
      } catch (e) {
        this.log(`${d.spec.name}: the old register page could not be retired: ${(e as Error).message}`);
      }
      if (this.retiring.size === 0 && this.retired !== null) {
        const f = this.retired;
        this.retired = null;
        f();
      }
    };
    if (!(m instanceof NvmeModel)) return gone();
    d.oldTransfers++;
    m.whenIdle(() => {
      d.oldTransfers--;
      gone();
      // an enable the new owner made meanwhile takes effect now (no model yet when idle at once)
      if (d.oldTransfers === 0) this.doorbell(d, d.model);
    });
  }

  /** `cb` runs once every old owner's register page reads all-ones (at once when none waits). */
  whenRetired(cb: () => void): void {
    if (this.retiring.size === 0) cb();
    else this.retired = cb;
  }

  setBusMaster(index: number, on: boolean): void {
    this.devices[index].busMaster = on;
  }

  info(index: number): { nvme: boolean; size: number; readonly: boolean; linkUp: boolean } {
    const d = this.devices[index];
    const m = d.model;
    return {
      nvme: d.spec.kind === 'nvme',
      size: d.medium?.size ?? 0,
      readonly: d.medium?.readonly ?? false,
      linkUp: m instanceof NicModel ? m.wire.linkUp : false,
    };
  }

  /** Every device goes; their owners' pages read all-ones once nothing is in flight (whenRetired). */
  close(): void {
    for (const d of this.devices) {
      this.retire(d);
      d.tap?.close();
      const m = d.medium;
      if (m) {
        // a transfer still on the threadpool must not meet a reused descriptor: close after it
        if ((m.busy ?? 0) > 0) m.onIdle = () => closeQuietly(m.fd);
        else closeQuietly(m.fd);
      }
    }
    this.devices.length = 0;
  }

  private recable(d: Device, model: NvmeModel | NicModel): void {
    const w = d.spec.wire;
    if (w?.kind !== 'cable') return;
    const peer = this.devices.find((p) => p.spec.sid === w.peerSid);
    if (peer && model instanceof NicModel && peer.model instanceof NicModel) cable(model, peer.model);
  }
}

function openMedium(spec: HwDeviceSpec): NvmeMedium {
  const path = spec.medium as string;
  try {
    if (!existsSync(path)) {
      if (spec.sizeBytes === undefined) throw new HwRefusal(HW_STATUS.ENOENT, `${spec.name}: medium ${path} does not exist and no size= says how big to create it`);
      const fd = openSync(path, constants.O_RDWR | constants.O_CREAT | constants.O_EXCL, 0o600);
      ftruncateSync(fd, spec.sizeBytes);
      return { fd, size: spec.sizeBytes, readonly: false };
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
      throw new HwRefusal(HW_STATUS.EINVAL, `${spec.name}: medium ${path} is not a regular file`);
    }
    return { fd, size: st.size, readonly: ro };
  } catch (e) {
    if (e instanceof HwRefusal) throw e;
    throw new HwRefusal(HW_STATUS.EINVAL, `${spec.name}: cannot open medium ${path}: ${(e as Error).message}`);
  }
}

function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // already gone
  }
}
