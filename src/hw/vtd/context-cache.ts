// Context cache: decoded context entries by source id, so a walk after an IOTLB miss skips the
// root and context reads. One slot per possible SID in typed arrays: lookups never hash or
// allocate, and entries stay until invalidated (that staleness is the hardware contract).

export const CC_EMPTY = 0;
export const CC_VALID = 1;
/** Caching mode only: a not-present root or context entry remembered as such. */
export const CC_NOT_PRESENT = 2;

const SIDS = 0x10000;

export class ContextCache {
  readonly state = new Uint8Array(SIDS);
  readonly did = new Uint16Array(SIDS);
  readonly levels = new Uint8Array(SIDS);
  readonly tt = new Uint8Array(SIDS);
  readonly fpd = new Uint8Array(SIDS);
  readonly slptptr = new Float64Array(SIDS);
  /** For CC_NOT_PRESENT: the fault reason (1 or 2) the cached miss reproduces. */
  readonly reason = new Uint8Array(SIDS);
  private count = 0;

  get size(): number {
    return this.count;
  }

  fill(sid: number, did: number, levels: number, tt: number, fpd: boolean, slptptr: number): void {
    if (this.state[sid] === CC_EMPTY) this.count++;
    this.state[sid] = CC_VALID;
    this.did[sid] = did;
    this.levels[sid] = levels;
    this.tt[sid] = tt;
    this.fpd[sid] = fpd ? 1 : 0;
    this.slptptr[sid] = slptptr;
  }

  /** Not-present entries carry domain id 0, which is why caching mode reserves DID 0. */
  fillNotPresent(sid: number, reason: number): void {
    if (this.state[sid] === CC_EMPTY) this.count++;
    this.state[sid] = CC_NOT_PRESENT;
    this.did[sid] = 0;
    this.reason[sid] = reason;
  }

  invalidateAll(): void {
    this.state.fill(CC_EMPTY);
    this.count = 0;
  }

  invalidateDomain(did: number): void {
    for (let sid = 0; sid < SIDS; sid++) {
      if (this.state[sid] !== CC_EMPTY && this.did[sid] === did) this.drop(sid);
    }
  }

  /**
   * Device-selective: the function mask widens the match to a multi-function device's siblings
   * (FM 1 ignores SID bit 2, 2 bits 2:1, 3 bits 2:0). Over-invalidating is always allowed, so the
   * DID is not compared.
   */
  invalidateDevice(sid: number, fm: number): void {
    const mask = [0, 4, 6, 7][fm & 3];
    const base = sid & ~mask & 0xffff;
    for (let f = 0; f <= mask; f++) {
      if ((f & ~mask) !== 0) continue;
      const s = base | f;
      if (this.state[s] !== CC_EMPTY) this.drop(s);
    }
  }

  private drop(sid: number): void {
    this.state[sid] = CC_EMPTY;
    this.count--;
  }
}
