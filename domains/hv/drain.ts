// A page a device may no longer reach (its device_map entry removed, the IOTLB invalidated) may
// still have a transfer in flight that was translated before: VT-d drains such DMA before an
// invalidation completes. hv's equivalent: the grant stays in use (GTF_reading/GTF_writing
// held, so its owner cannot revoke and reuse the frame) until hw reports the page idle.
// Waits are rare (a mapper that unmaps under its own I/O, or dies), so idle pages are polled.

export class DrainWaiter {
  private readonly waiting: { pfn: number; then: () => void; since: number; warned: boolean }[] = [];
  private timer: NodeJS.Timeout | null = null;

  constructor(
    /** transfers in flight on the page; 0 as well when no hardware is left to do any */
    private readonly inFlight: (pfn: number) => number,
    private readonly log: (line: string) => void,
    private readonly pollMs = 2,
  ) {}

  /** Runs `then` once no transfer touches `pfn`: now, or after the transfers in flight end. */
  after(pfn: number, then: () => void): void {
    if (this.inFlight(pfn) <= 0) return then();
    this.waiting.push({ pfn, then, since: Date.now(), warned: false });
    this.arm();
  }

  get pending(): number {
    return this.waiting.length;
  }

  /** The hardware is gone: nothing is in flight any more. */
  releaseAll(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    for (const w of this.waiting.splice(0)) w.then();
  }

  private arm(): void {
    if (this.timer !== null) return;
    this.timer = setTimeout(() => this.poll(), this.pollMs);
    this.timer.unref();
  }

  private poll(): void {
    this.timer = null;
    const now = Date.now();
    for (let i = 0; i < this.waiting.length; ) {
      const w = this.waiting[i];
      if (this.inFlight(w.pfn) <= 0) {
        this.waiting.splice(i, 1);
        w.then();
        continue;
      }
      if (!w.warned && now - w.since > 10_000) {
        w.warned = true;
        this.log(`hv: page 0x${w.pfn.toString(16)} still has device DMA in flight after 10 s; its grant stays in use until that ends`);
      }
      i++;
    }
    if (this.waiting.length > 0) this.arm();
  }
}
