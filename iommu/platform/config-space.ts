// A 256-byte PCI configuration space per function with the standard type 0/1 header, a power
// management and a PCI Express capability, emulated BARs, and the write filter that stands between
// a domain and its device: unless the assignment is permissive, an owner may only flip the command
// register's safe bits, size and place BARs, and set the interrupt line; everything else is dropped
// and logged, as pciback does for a PV driver domain.

import type { HostDevice } from '../../src/config/host.js';
import { isBridge } from './topology.js';

import { CFG, CFG_SIZE, CMD_BUS_MASTER, CMD_INTX_DISABLE, CMD_IO, CMD_MEMORY, CMD_MWI, CMD_PARITY, CMD_SERR } from '../../src/abi/pci.js';

/** Bits a non-permissive owner may change: decoding, DMA, and error/interrupt plumbing. */
const CMD_OWNER_BITS = CMD_IO | CMD_MEMORY | CMD_BUS_MASTER | CMD_MWI | CMD_PARITY | CMD_SERR | CMD_INTX_DISABLE;
const CMD_HW_BITS = CMD_OWNER_BITS | (1 << 3) | (1 << 5) | (1 << 9);
const STATUS_W1C = 0xf900;
const STATUS_CAP_LIST = 1 << 4;
const EXP_DEVCAP_FLR = 1 << 28;
const EXP_DEVCTL_FLR = 1 << 15;

export interface BarDef {
  kind: 'mem32' | 'mem64' | 'io';
  size: number;
  prefetch?: boolean;
}

/** What the emulated device models expose; the device issue's models map their registers into these. */
export function barsFor(dev: HostDevice): (BarDef | null)[] {
  switch (dev.type) {
    case 'nvme':
      return [{ kind: 'mem64', size: 0x4000 }, null, null, null, null, null];
    case 'nic':
      return [{ kind: 'mem32', size: 0x20000 }, null, { kind: 'io', size: 0x20 }, null, null, null];
    default:
      return [null, null, null, null, null, null];
  }
}

export interface ConfigWriteOutcome {
  /** Bytes that reached the device (possibly with read-only bits left alone). */
  applied: boolean;
  /** Why (part of) the write was dropped, for the log. */
  dropped?: string;
  /** The write asked the device for a function-level reset. */
  flr?: boolean;
}

export class ConfigSpace {
  readonly bytes = new Uint8Array(CFG_SIZE);
  private readonly dv = new DataView(this.bytes.buffer);
  private readonly bars: (BarDef | null)[];
  private readonly bridge: boolean;

  constructor(private readonly dev: HostDevice) {
    this.bridge = isBridge(dev);
    this.bars = this.bridge ? [null, null] : barsFor(dev);
    this.reset();
  }

  /** Power-on state: what FLR, PM and bus reset bring the function back to. */
  reset(): void {
    const d = this.dev;
    this.bytes.fill(0);
    this.dv.setUint16(CFG.VENDOR, d.vendor, true);
    this.dv.setUint16(CFG.DEVICE, d.device, true);
    this.dv.setUint16(CFG.STATUS, STATUS_CAP_LIST, true);
    this.bytes[CFG.REVISION] = 1;
    this.bytes[CFG.CLASS] = d.classCode & 0xff;
    this.bytes[CFG.CLASS + 1] = (d.classCode >> 8) & 0xff;
    this.bytes[CFG.CLASS + 2] = (d.classCode >> 16) & 0xff;
    this.bytes[CFG.HEADER_TYPE] = (this.bridge ? 1 : 0) | (d.multifunction ? 0x80 : 0);
    this.bytes[CFG.CAP_PTR] = CFG.PM_CAP;
    this.bars.forEach((b, i) => {
      if (b === null) return;
      const flags = b.kind === 'io' ? 1 : (b.kind === 'mem64' ? 4 : 0) | (b.prefetch ? 8 : 0);
      this.dv.setUint32(CFG.BAR0 + 4 * i, flags, true);
    });
    if (!this.bridge) {
      this.dv.setUint16(CFG.SUBSYS_VENDOR, d.vendor, true);
      this.dv.setUint16(CFG.SUBSYS_ID, d.device, true);
      this.bytes[CFG.INT_PIN] = d.type === 'host-bridge' ? 0 : 1;
    }
    // PM capability: version 3; PMCSR NoSoftReset clear when a PM reset (D3hot->D0) is real
    this.bytes[CFG.PM_CAP] = 0x01;
    this.bytes[CFG.PM_CAP + 1] = CFG.EXP_CAP;
    this.dv.setUint16(CFG.PM_CAP + 2, 0x0003, true);
    this.dv.setUint16(CFG.PM_CAP + 4, d.resetMethods.includes('pm') ? 0 : 0x0008, true);
    // PCI Express capability: endpoint, root port or bridge; DevCap.FLR when FLR is available
    this.bytes[CFG.EXP_CAP] = 0x10;
    this.bytes[CFG.EXP_CAP + 1] = 0;
    const portType = d.type === 'root-port' ? 4 : d.type === 'pci-bridge' ? 6 : 0;
    this.dv.setUint16(CFG.EXP_CAP + 2, 0x0002 | (portType << 4), true);
    this.dv.setUint32(CFG.EXP_CAP + 4, d.resetMethods.includes('flr') ? EXP_DEVCAP_FLR : 0, true);
  }

  get command(): number {
    return this.dv.getUint16(CFG.COMMAND, true);
  }

  /** Bus master enable: a device without it issues no DMA. */
  get busMaster(): boolean {
    return (this.command & CMD_BUS_MASTER) !== 0;
  }

  /** Programmed base address of BAR `i` (0 if unimplemented), for the device models' MMIO decode. */
  barAddress(i: number): number {
    const b = this.bars[i];
    if (!b) return 0;
    const lo = this.dv.getUint32(CFG.BAR0 + 4 * i, true);
    const mask = b.kind === 'io' ? ~3 : ~0xf;
    const base = (lo & mask) >>> 0;
    return b.kind === 'mem64' ? this.dv.getUint32(CFG.BAR0 + 4 * i + 4, true) * 4294967296 + base : base;
  }

  read(off: number, size: 1 | 2 | 4): number {
    if (size === 1) return this.bytes[off];
    if (size === 2) return this.dv.getUint16(off, true);
    return this.dv.getUint32(off, true);
  }

  /**
   * Applies a write as the device would, restricted to what `permissive` allows. Callers check
   * alignment and range first; this sees only well-formed accesses.
   */
  write(off: number, size: 1 | 2 | 4, value: number, permissive: boolean): ConfigWriteOutcome {
    const out: ConfigWriteOutcome = { applied: false };
    const notes: string[] = [];
    let flr = false;
    for (let i = 0; i < size; i++) {
      const o = off + i;
      const byte = (value >>> (8 * i)) & 0xff;
      const r = this.writeByte(o, byte, permissive);
      if (r === 'applied') out.applied = true;
      else if (r === 'flr') {
        out.applied = true;
        flr = true;
      } else if (r !== 'readonly') notes.push(r);
    }
    if (notes.length > 0) out.dropped = [...new Set(notes)].join('; ');
    if (flr) out.flr = true;
    return out;
  }

  private writeByte(o: number, byte: number, permissive: boolean): 'applied' | 'readonly' | 'flr' | string {
    // command register: owner bits always, the rest only when permissive and implemented
    if (o === CFG.COMMAND || o === CFG.COMMAND + 1) {
      const shift = (o - CFG.COMMAND) * 8;
      const allowed = ((permissive ? CMD_HW_BITS : CMD_OWNER_BITS) >> shift) & 0xff;
      const old = this.bytes[o];
      this.bytes[o] = (old & ~allowed) | (byte & allowed);
      const refused = byte & ~allowed & ((CMD_HW_BITS >> shift) & 0xff) & (byte ^ old);
      return refused !== 0 ? `command bits 0x${(refused << shift).toString(16)} need permissive` : 'applied';
    }
    if (o === CFG.STATUS || o === CFG.STATUS + 1) {
      const w1c = (STATUS_W1C >> ((o - CFG.STATUS) * 8)) & 0xff;
      this.bytes[o] &= ~(byte & w1c);
      return 'applied';
    }
    const barEnd = CFG.BAR0 + 4 * this.bars.length;
    if (o >= CFG.BAR0 && o < barEnd) return this.barByte(o, byte);
    const romOff = this.bridge ? CFG.ROM_BRIDGE : CFG.ROM;
    if (o >= romOff && o < romOff + 4) return 'readonly'; // no expansion ROM: hardwired zero
    if (o === CFG.INT_LINE) {
      this.bytes[o] = byte; // a scratch register for the OS; the device ignores it
      return 'applied';
    }
    if (!permissive) return `offset 0x${o.toString(16)} (${fieldName(o, this.bridge)}) is not writable without permissive`;
    if (o === CFG.CACHE_LINE || o === CFG.LATENCY) {
      this.bytes[o] = byte;
      return 'applied';
    }
    if (this.bridge && o >= 0x18 && o <= 0x1a) {
      this.bytes[o] = byte; // primary/secondary/subordinate bus numbers
      return 'applied';
    }
    if (o === CFG.PM_CAP + 4) {
      this.bytes[o] = (this.bytes[o] & ~3) | (byte & 3); // power state
      return 'applied';
    }
    if (o === CFG.EXP_CAP + 9) {
      // DevCtl high byte: bit 15 initiates FLR when DevCap says the function has it
      if ((byte & 0x80) !== 0 && (this.dv.getUint32(CFG.EXP_CAP + 4, true) & EXP_DEVCAP_FLR) !== 0) return 'flr';
      this.bytes[o] = byte & 0x7f;
      return 'applied';
    }
    if (o === CFG.EXP_CAP + 8) {
      this.bytes[o] = byte;
      return 'applied';
    }
    return 'readonly';
  }

  /** BARs keep only the address bits above their size: writing all ones then reading sizes them. */
  private barByte(o: number, byte: number): 'applied' | 'readonly' {
    const idx = (o - CFG.BAR0) >> 2;
    const lane = (o - CFG.BAR0) & 3;
    const prev = idx > 0 ? this.bars[idx - 1] : null;
    if (prev && prev.kind === 'mem64') {
      this.bytes[o] = byte; // upper half of a 64-bit BAR: every bit is an address bit
      return 'applied';
    }
    const b = this.bars[idx];
    if (!b) return 'readonly';
    const flagBits = b.kind === 'io' ? 0x3 : 0xf;
    const mask = (~(b.size - 1) & ~flagBits) >>> 0;
    const laneMask = (mask >>> (8 * lane)) & 0xff;
    this.bytes[o] = (this.bytes[o] & ~laneMask) | (byte & laneMask);
    return 'applied';
  }
}

function fieldName(o: number, bridge: boolean): string {
  if (o <= 0x03) return 'vendor/device id';
  if (o >= 0x08 && o <= 0x0b) return 'revision/class code';
  if (o === 0x0c) return 'cache line size';
  if (o === 0x0d) return 'latency timer';
  if (o === 0x0e) return 'header type';
  if (o === 0x0f) return 'BIST';
  if (bridge && o >= 0x18 && o <= 0x1b) return 'bus numbers';
  if (bridge && o >= 0x1c && o <= 0x2f) return 'bridge windows';
  if (!bridge && o >= 0x2c && o <= 0x2f) return 'subsystem id';
  if (o === 0x34) return 'capabilities pointer';
  if (o === 0x3d) return 'interrupt pin';
  if (o >= CFG.PM_CAP && o < CFG.EXP_CAP) return 'power management capability';
  if (o >= CFG.EXP_CAP && o < CFG.EXP_CAP + 0x3c) return 'PCI Express capability';
  return 'device-specific';
}
