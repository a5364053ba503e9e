// Root and context tables as the OS lays them out: one root table, a context table per bus
// created on first use. Writing an entry does not invalidate the context cache; the caller does.

import type { ContextEntry } from '../../src/abi/vtd-entries.js';
import { decodeContextEntry, encodeContextEntry, encodeRootEntry } from '../../src/abi/vtd-entries.js';
import type { FrameSource, PhysMem } from '../../src/memory/physmem.js';
import { readU64, writeU64 } from '../../src/memory/physmem.js';

export class RootTable {
  readonly pa: number;
  private readonly contextTables = new Map<number, number>();

  constructor(
    private readonly mem: PhysMem,
    private readonly frames: FrameSource,
  ) {
    this.pa = frames.alloc();
  }

  rootEntryAddress(bus: number): number {
    return this.pa + (bus & 0xff) * 16;
  }

  /** Address of the context entry, creating the bus's context table if `create`. */
  contextEntryAddress(bus: number, devfn: number, create = false): number | null {
    let ct = this.contextTables.get(bus & 0xff);
    if (ct === undefined) {
      if (!create) return null;
      ct = this.frames.alloc();
      this.contextTables.set(bus & 0xff, ct);
      const root = encodeRootEntry({ present: true, contextTable: ct });
      writeU64(this.mem, this.rootEntryAddress(bus) + 8, root.hi);
      writeU64(this.mem, this.rootEntryAddress(bus), root.lo);
    }
    return ct + (devfn & 0xff) * 16;
  }

  setContext(bus: number, devfn: number, e: ContextEntry): void {
    const ea = this.contextEntryAddress(bus, devfn, true);
    if (ea === null) throw new Error('unreachable');
    const { lo, hi } = encodeContextEntry(e);
    // hi first so the entry never reads as present with a stale domain id
    writeU64(this.mem, ea, 0n);
    writeU64(this.mem, ea + 8, hi);
    writeU64(this.mem, ea, lo);
  }

  clearContext(bus: number, devfn: number): void {
    const ea = this.contextEntryAddress(bus, devfn);
    if (ea === null) return;
    writeU64(this.mem, ea, 0n);
    writeU64(this.mem, ea + 8, 0n);
  }

  /** Every present context entry (bus, devfn) whose domain id is `did`. */
  entriesWithDid(did: number): { bus: number; devfn: number }[] {
    const out: { bus: number; devfn: number }[] = [];
    for (const [bus, ct] of this.contextTables) {
      for (let devfn = 0; devfn < 256; devfn++) {
        const ea = ct + devfn * 16;
        const e = decodeContextEntry(readU64(this.mem, ea), readU64(this.mem, ea + 8));
        if (e.present && e.did === did) out.push({ bus, devfn });
      }
    }
    return out;
  }

  context(bus: number, devfn: number): ContextEntry | null {
    const ea = this.contextEntryAddress(bus, devfn);
    if (ea === null) return null;
    const e = decodeContextEntry(readU64(this.mem, ea), readU64(this.mem, ea + 8));
    return e.present ? e : null;
  }
}
