// Fault notices to hv, limited per source id. A driver domain can make its device fault at will,
// and hv's notice socket is shared by every domain's devices: a device may send at most `max`
// notices a window; the rest of that window are counted, and their number goes to hv as one
// line once the window closes. What hv misses is still in the unit's fault registers and stats.

interface SourceWindow {
  start: number;
  sent: number;
  held: number;
}

export class NoticeLimiter {
  private readonly windows = new Map<number, SourceWindow>();
  /** notices held back since hw started */
  held = 0;

  constructor(
    private readonly max: number,
    private readonly windowMs: number,
    /** a window closed with `n` notices of `sid` held back */
    private readonly report: (sid: number, n: number) => void,
    private readonly now: () => number = Date.now,
  ) {}

  /** True when a notice of `sid` may go now; false when it is only counted. */
  allow(sid: number): boolean {
    const t = this.now();
    let w = this.windows.get(sid);
    if (w === undefined) {
      w = { start: t, sent: 0, held: 0 };
      this.windows.set(sid, w);
    } else if (t - w.start >= this.windowMs && w.held === 0) {
      w.start = t;
      w.sent = 0;
    }
    if (w.sent < this.max) {
      w.sent++;
      return true;
    }
    this.held++;
    if (w.held++ === 0) {
      const window = w;
      const timer = setTimeout(() => this.close(sid, window), Math.max(0, window.start + this.windowMs - t));
      // hw lives for hv's requests, not for a summary line
      timer.unref();
    }
    return false;
  }

  private close(sid: number, w: SourceWindow): void {
    const n = w.held;
    w.held = 0;
    w.sent = 0;
    w.start = this.now();
    this.report(sid, n);
  }
}
