// A page a device may no longer reach (its device_map entry removed, the IOTLB invalidated) may
// still have a transfer in flight that was translated before: VT-d drains such DMA before an
// invalidation completes. hv's equivalent: the grant stays in use (GTF_reading/GTF_writing
// held, so its owner cannot revoke and reuse the frame) until hw reports the page idle.
// Waits are rare (a mapper that unmaps under its own I/O, or dies), so idle pages are polled,
// backing off from 2 ms to 200 ms so that a hung medium cannot keep hv busy asking.

export class DrainWaiter {
  private readonly waiting: { pfn: number; then: () => void; since: number; warned: boolean }[] = [];
  private timer: NodeJS.Timeout | null = null;
  private interval: number;

  constructor(
    /** transfers in flight on the page; 0 as well when no hardware is left to do any */
    private readonly inFlight: (pfn: number) => number,
    private readonly log: (line: string) => void,
    private readonly pollMs = 2,
    private readonly maxPollMs = 200,
  ) {
    this.interval = pollMs;
  }

  /** Runs `then` once no transfer touches `pfn`: now, or after the transfers in flight end. */
  after(pfn: number, then: () => void): void {
    if (this.idle(pfn)) return then();
    this.waiting.push({ pfn, then, since: Date.now(), warned: false });
    this.interval = this.pollMs;
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
    this.timer = setTimeout(() => this.poll(), this.interval);
    this.timer.unref();
  }

  private poll(): void {
    this.timer = null;
    const now = Date.now();
    for (let i = 0; i < this.waiting.length; ) {
      const w = this.waiting[i];
      if (this.idle(w.pfn)) {
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
    if (this.waiting.length > 0) {
      this.interval = Math.min(this.maxPollMs, this.interval * 2);
      this.arm();
    }
  }

  /** An answer we cannot read counts as "still in flight": wrongly waiting is the safe error. */
  private idle(pfn: number): boolean {
    try {
      return this.inFlight(pfn) <= 0;
    } catch (e) {
      this.log(`hv: cannot tell whether page 0x${pfn.toString(16)} is idle (${(e as Error).message}); its grant stays in use`);
      return false;
    }
  }
}
