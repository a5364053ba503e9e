// Second-level page tables as an OS (a driver domain's kernel, or hv for device_map grants) builds
// them: intermediate tables allocated on demand, leaves for 4 KiB pages and 2 MiB / 1 GiB
// superpages. Changing a table does not invalidate anything; the caller owes the IOTLB an
// invalidation, exactly as on hardware.

import { PTE_PS, PTE_R, PTE_SNP, PTE_W, levelSize, tableIndex } from '../../src/abi/vtd-entries.js';
import type { FrameSource, PhysMem } from '../../src/memory/physmem.js';
import { readU64, writeU64 } from '../../src/memory/physmem.js';

export const SIZE_4K = 0x1000;
export const SIZE_2M = 0x200000;
export const SIZE_1G = 0x40000000;
export type PageSize = typeof SIZE_4K | typeof SIZE_2M | typeof SIZE_1G;

export interface PagePerm {
  read: boolean;
  write: boolean;
}

export interface Mapping {
  iova: number;
  pa: number;
  size: PageSize;
  read: boolean;
  write: boolean;
}

const LEVEL_OF: Record<PageSize, number> = { [SIZE_4K]: 1, [SIZE_2M]: 2, [SIZE_1G]: 3 };

export class SecondLevelTable {
  /** SLPTPTR for the context entry. */
  readonly root: number;
  readonly width: number;

  constructor(
    private readonly mem: PhysMem,
    private readonly frames: FrameSource,
    readonly levels: 3 | 4 = 4,
    private readonly haw = 48,
  ) {
    this.root = frames.alloc();
    this.width = 12 + 9 * levels;
  }

  /** Every table frame of this hierarchy (root last), found by walking it: what destroy() frees. */
  tableFrames(): number[] {
    const out: number[] = [];
    const mask = (1n << BigInt(this.haw)) - 1n;
    const walk = (table: number, level: number): void => {
      if (level > 1) {
        for (let i = 0; i < 512; i++) {
          const e = readU64(this.mem, table + i * 8);
          if ((e & 3n) === 0n || (e & BigInt(PTE_PS)) !== 0n) continue;
          walk(Number(e & mask & ~0xfffn), level - 1);
        }
      }
      out.push(table);
    };
    walk(this.root, this.levels);
    return out;
  }

  /**
   * Frees every table frame back to the frame source. The caller must first make sure nothing
   * reaches these tables any more: no context entry names the root, and the context cache and
   * IOTLB hold nothing of the domain. The object is unusable afterwards.
   */
  destroy(): number {
    if (this.destroyed) return 0;
    const frames = this.tableFrames();
    this.destroyed = true;
    for (const f of frames) this.frames.free(f);
    return frames.length;
  }

  private destroyed = false;

  map(iova: number, pa: number, size: PageSize, perm: PagePerm, opts: { snoop?: boolean } = {}): void {
    if (this.destroyed) throw new Error('this page table was destroyed');
    const level = this.check(iova, size);
    if (!Number.isSafeInteger(pa) || pa < 0 || pa % size !== 0 || pa >= 2 ** this.haw) throw new RangeError(`physical address 0x${pa.toString(16)} is not a ${size}-aligned address below 2^${this.haw}`);
    if (!perm.read && !perm.write) throw new RangeError('a mapping needs read or write permission; use unmap to remove one');
    const table = this.tableFor(iova, level, true);
    if (table === null) throw new Error('unreachable');
    const ea = table + tableIndex(iova, level) * 8;
    const old = readU64(this.mem, ea);
    if ((old & 3n) !== 0n) throw new RangeError(`iova 0x${iova.toString(16)} is already mapped at level ${level}; unmap it first`);
    let pte = BigInt(pa) | (perm.read ? BigInt(PTE_R) : 0n) | (perm.write ? BigInt(PTE_W) : 0n);
    if (level > 1) pte |= BigInt(PTE_PS);
    if (opts.snoop) pte |= BigInt(PTE_SNP);
    writeU64(this.mem, ea, pte);
  }

  /** Removes the leaf that covers `iova`; returns what was mapped there, or null. */
  unmap(iova: number): Mapping | null {
    const leaf = this.findLeaf(iova);
    if (leaf === null) return null;
    writeU64(this.mem, leaf.entry, 0n);
    return leaf.mapping;
  }

  /** Changes the permissions of the leaf covering `iova` in place. */
  protect(iova: number, perm: PagePerm): Mapping {
    if (!perm.read && !perm.write) throw new RangeError('use unmap to remove a mapping');
    const leaf = this.findLeaf(iova);
    if (leaf === null) throw new RangeError(`iova 0x${iova.toString(16)} is not mapped`);
    const old = readU64(this.mem, leaf.entry);
    writeU64(this.mem, leaf.entry, (old & ~3n) | (perm.read ? BigInt(PTE_R) : 0n) | (perm.write ? BigInt(PTE_W) : 0n));
    return { ...leaf.mapping, read: perm.read, write: perm.write };
  }

  lookup(iova: number): Mapping | null {
    const leaf = this.findLeaf(iova);
    if (leaf === null) return null;
    const off = iova - leaf.mapping.iova;
    return { ...leaf.mapping, iova, pa: leaf.mapping.pa + off };
  }

  /** Physical address of the entry for `iova` at `level`, if the tables reach that far. */
  entryAddress(iova: number, level: number): number | null {
    const table = this.tableFor(iova, level, false);
    return table === null ? null : table + tableIndex(iova, level) * 8;
  }

  private check(iova: number, size: PageSize): number {
    const level = LEVEL_OF[size];
    if (level === undefined) throw new RangeError(`page size ${size} is not 4 KiB, 2 MiB or 1 GiB`);
    if (level > this.levels) throw new RangeError(`a ${this.levels}-level table has no level-${level} pages`);
    if (!Number.isSafeInteger(iova) || iova < 0 || iova % size !== 0 || iova + size > 2 ** this.width) {
      throw new RangeError(`iova 0x${iova.toString(16)} is not a ${size}-aligned address within the ${this.width}-bit domain`);
    }
    return level;
  }

  /** Table holding the entry for `iova` at `level`, creating intermediate tables when asked. */
  private tableFor(iova: number, level: number, create: boolean): number | null {
    if (this.destroyed) return null;
    let table = this.root;
    for (let l: number = this.levels; l > level; l--) {
      const ea = table + tableIndex(iova, l) * 8;
      const e = readU64(this.mem, ea);
      if ((e & 3n) === 0n) {
        if (!create) return null;
        const next = this.frames.alloc();
        // intermediate entries grant R and W: the leaf alone decides the permission
        writeU64(this.mem, ea, BigInt(next) | BigInt(PTE_R | PTE_W));
        table = next;
        continue;
      }
      if ((e & BigInt(PTE_PS)) !== 0n) {
        if (!create) return null;
        throw new RangeError(`iova 0x${iova.toString(16)} lies inside a ${levelSize(l)}-byte superpage; unmap it first`);
      }
      table = Number(e & ((1n << BigInt(this.haw)) - 1n) & ~0xfffn);
    }
    return table;
  }

  private findLeaf(iova: number): { entry: number; mapping: Mapping } | null {
    if (this.destroyed) return null;
    if (!Number.isSafeInteger(iova) || iova < 0 || iova >= 2 ** this.width) return null;
    let table = this.root;
    for (let l: number = this.levels; l >= 1; l--) {
      const ea = table + tableIndex(iova, l) * 8;
      const e = readU64(this.mem, ea);
      if ((e & 3n) === 0n) return null;
      const addr = Number(e & ((1n << BigInt(this.haw)) - 1n) & ~0xfffn);
      if (l === 1 || (e & BigInt(PTE_PS)) !== 0n) {
        const size = levelSize(l) as PageSize;
        return {
          entry: ea,
          mapping: { iova: iova - (iova % size), pa: addr, size, read: (e & 1n) !== 0n, write: (e & 2n) !== 0n },
        };
      }
      table = addr;
    }
    return null;
  }
}
