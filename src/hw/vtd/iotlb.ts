// IOTLB: completed second-level translations keyed by (source id, page frame at the leaf's level,
// level), tagged with the domain id so domain- and page-selective invalidation can find them.
// Set-associative in typed arrays like a hardware TLB: bounded, no hashing of boxed keys, and a
// hit costs a few integer compares and no allocation.

const TWO32 = 4294967296;

/** Access bits in an entry; 0 marks a caching-mode not-present entry. */
export const ACC_R = 1;
export const ACC_W = 2;

export class Iotlb {
  readonly capacity: number;
  readonly ways: number;
  private readonly setMask: number;
  readonly valid: Uint8Array;
  readonly level: Uint8Array;
  readonly sid: Uint16Array;
  readonly did: Uint16Array;
  /** Frame number at the entry's own level (iova >> (12 + 9 * (level - 1))). */
  readonly gfn: Float64Array;
  /** Physical base of the page the entry maps. */
  readonly base: Float64Array;
  readonly access: Uint8Array;
  readonly fpd: Uint8Array;
  private readonly victim: Uint8Array;
  private readonly perLevel = new Int32Array(4);
  private count = 0;

  constructor(capacity = 1024, ways = 4) {
    if (!Number.isInteger(capacity) || !Number.isInteger(ways) || ways < 1 || capacity < ways) throw new RangeError('bad IOTLB geometry');
    const sets = capacity / ways;
    if (!Number.isInteger(sets) || (sets & (sets - 1)) !== 0) throw new RangeError('IOTLB sets must be a power of two');
    this.capacity = capacity;
    this.ways = ways;
    this.setMask = sets - 1;
    this.valid = new Uint8Array(capacity);
    this.level = new Uint8Array(capacity);
    this.sid = new Uint16Array(capacity);
    this.did = new Uint16Array(capacity);
    this.gfn = new Float64Array(capacity);
    this.base = new Float64Array(capacity);
    this.access = new Uint8Array(capacity);
    this.fpd = new Uint8Array(capacity);
    this.victim = new Uint8Array(sets);
  }

  get size(): number {
    return this.count;
  }

  /**
   * Slot translating (sid, iova) or -1. The iova arrives as `hi` (bits 47:32) and `pfn` (bits 31:12),
   * both small integers, so a call that is not inlined boxes nothing. Levels with no cached
   * entries are skipped, so 4 KiB-only workloads probe one set.
   */
  lookup(sid: number, pfn: number, hi: number): number {
    if (this.perLevel[1] > 0) {
      const s = this.probe(sid, 1, hi * 1048576 + pfn, pfn | (hi << 20));
      if (s >= 0) return s;
    }
    if (this.perLevel[2] > 0) {
      const p = pfn >>> 9;
      const s = this.probe(sid, 2, hi * 2048 + p, p | (hi << 11));
      if (s >= 0) return s;
    }
    if (this.perLevel[3] > 0) {
      const p = pfn >>> 18;
      const s = this.probe(sid, 3, hi * 4 + p, p | (hi << 2));
      if (s >= 0) return s;
    }
    return -1;
  }

  insert(sid: number, did: number, iova: number, level: number, base: number, access: number, fpd: boolean): void {
    const shift = 12 + 9 * (level - 1);
    const gfn = Math.floor(iova / 2 ** shift);
    const lo = iova >>> 0;
    const hi = Math.floor(iova / TWO32) >>> 0;
    const h32 = shift === 12 ? (lo >>> 12) | (hi << 20) : shift === 21 ? (lo >>> 21) | (hi << 11) : (lo >>> 30) | (hi << 2);
    const set = this.setOf(sid, level, h32);
    const first = set * this.ways;
    let slot = -1;
    for (let i = first; i < first + this.ways; i++) {
      if (this.valid[i] === 1 && this.sid[i] === sid && this.level[i] === level && this.gfn[i] === gfn) {
        slot = i;
        break;
      }
    }
    if (slot < 0) {
      for (let i = first; i < first + this.ways; i++) {
        if (this.valid[i] === 0) {
          slot = i;
          break;
        }
      }
    }
    if (slot < 0) {
      slot = first + this.victim[set];
      this.victim[set] = (this.victim[set] + 1) % this.ways;
    }
    if (this.valid[slot] === 1) this.drop(slot);
    this.valid[slot] = 1;
    this.level[slot] = level;
    this.sid[slot] = sid;
    this.did[slot] = did;
    this.gfn[slot] = gfn;
    this.base[slot] = base;
    this.access[slot] = access;
    this.fpd[slot] = fpd ? 1 : 0;
    this.perLevel[level]++;
    this.count++;
  }

  invalidateAll(): void {
    this.valid.fill(0);
    this.perLevel.fill(0);
    this.count = 0;
  }

  invalidateDomain(did: number): void {
    for (let i = 0; i < this.capacity; i++) if (this.valid[i] === 1 && this.did[i] === did) this.drop(i);
  }

  /**
   * Page-selective with address mask: drops the domain's entries overlapping the naturally
   * aligned 2^am pages around `addr`, including superpage entries that cover part of it.
   */
  invalidatePages(did: number, addr: number, am: number): void {
    const span = 2 ** (12 + am);
    const start = Math.floor(addr / span) * span;
    const end = start + span;
    for (let i = 0; i < this.capacity; i++) {
      if (this.valid[i] !== 1 || this.did[i] !== did) continue;
      const size = 2 ** (12 + 9 * (this.level[i] - 1));
      const s = this.gfn[i] * size;
      if (s < end && start < s + size) this.drop(i);
    }
  }

  private probe(sid: number, level: number, gfn: number, h32: number): number {
    const first = this.setOf(sid, level, h32) * this.ways;
    const last = first + this.ways;
    for (let i = first; i < last; i++) {
      if (this.gfn[i] === gfn && this.valid[i] === 1 && this.sid[i] === sid && this.level[i] === level) return i;
    }
    return -1;
  }

  private setOf(sid: number, level: number, h32: number): number {
    let h = h32 ^ Math.imul(sid, 0x9e3779b1) ^ Math.imul(level, 0x85ebca6b);
    h = Math.imul(h ^ (h >>> 15), 0x2c1b3c6d);
    h ^= h >>> 12;
    return h & this.setMask;
  }

  private drop(i: number): void {
    this.valid[i] = 0;
    this.perLevel[this.level[i]]--;
    this.count--;
  }
}
