// Credit-based transmit rate limiting as netback's `rate` node asks: `bytes` of credit per
// `usec` interval. Credit accumulates (one interval's worth per replenish) up to a burst of
// max(128 KiB, credit) so that a full-size GSO frame can always pass eventually, however small
// the per-interval credit.
import type { NetifRate } from '../netif/params.js';

const MIN_BURST = 131072;

export class TxCredit {
  private remaining: number;
  private nextAt: number;
  private readonly intervalMs: number;

  constructor(readonly rate: NetifRate | null, now: number) {
    this.remaining = rate ? rate.bytesPerInterval : Infinity;
    this.intervalMs = rate ? rate.intervalUsec / 1000 : 0;
    this.nextAt = now + this.intervalMs;
  }

  get limited(): boolean {
    return this.rate !== null;
  }

  /** spends `size` bytes of credit if there is enough (replenishing first if an interval passed) */
  take(size: number, now: number): boolean {
    if (size <= this.remaining) {
      this.remaining -= size;
      return true;
    }
    const r = this.rate;
    if (r === null) return true;
    if (now >= this.nextAt) {
      // As Linux netback's tx_add_credit: one interval's credit per replenish, however long the
      // vif was idle, capped at the burst. Idle time never banks a large burst.
      const burst = Math.max(MIN_BURST, r.bytesPerInterval);
      this.remaining = Math.min(this.remaining + r.bytesPerInterval, burst);
      this.nextAt = now + this.intervalMs;
    }
    if (size > this.remaining) return false;
    this.remaining -= size;
    return true;
  }

  /** ms until the next replenish */
  waitMs(now: number): number {
    return Math.max(0, this.nextAt - now);
  }
}
