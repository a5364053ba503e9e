// Latency histogram shared, bucket for bucket, with the C peer (hist_add in blkif_peer.c): exact
// below 64 ns, then 32 log-linear sub-buckets per power of two (~3% resolution), clamped at 2^32 ns.
// Recording is one Math.clz32 and an increment: nothing allocates on the data path.

export const HIST_BUCKETS = 928;

export function histIndex(ns: number): number {
  const v = ns <= 0 ? 0 : ns >= 4294967295 ? 4294967295 : Math.floor(ns) >>> 0;
  if (v < 64) return v;
  const e = 31 - Math.clz32(v);
  return 64 + (e - 6) * 32 + ((v >>> (e - 5)) & 31);
}

/** [low, high) in ns of a bucket */
export function histBucketRange(idx: number): [number, number] {
  if (idx < 64) return [idx, idx + 1];
  const k = idx - 64;
  const shift = Math.floor(k / 32) + 1; // e - 5
  const sub = k % 32;
  return [(32 + sub) * 2 ** shift, (33 + sub) * 2 ** shift];
}

export class Histogram {
  readonly counts = new Float64Array(HIST_BUCKETS);
  add(ns: number): void {
    this.counts[histIndex(ns)]++;
  }
  addN(ns: number, n: number): void {
    this.counts[histIndex(ns)] += n;
  }
  reset(): void {
    this.counts.fill(0);
  }
  /** sparse form, as the C peer prints it */
  toPairs(): [number, number][] {
    const out: [number, number][] = [];
    for (let i = 0; i < HIST_BUCKETS; i++) if (this.counts[i] > 0) out.push([i, this.counts[i]]);
    return out;
  }
}

export function histTotal(pairs: readonly (readonly [number, number])[]): number {
  let n = 0;
  for (const [, c] of pairs) n += c;
  return n;
}

/** the q-quantile (0..1) in ns, taken at the middle of its bucket; null for an empty histogram */
export function histQuantile(pairs: readonly (readonly [number, number])[], q: number): number | null {
  const total = histTotal(pairs);
  if (total === 0) return null;
  const sorted = [...pairs].sort((a, b) => a[0] - b[0]);
  const rank = Math.max(1, Math.ceil(q * total));
  let seen = 0;
  for (const [idx, c] of sorted) {
    seen += c;
    if (seen >= rank) {
      const [lo, hi] = histBucketRange(idx);
      return idx < 64 ? lo : (lo + hi) / 2;
    }
  }
  const [lo, hi] = histBucketRange(sorted[sorted.length - 1][0]);
  return (lo + hi) / 2;
}

/** window length for the per-window throughput record */
export const WINDOW_MS = 10;

/**
 * Completions per ~10 ms window while measuring, so that a run which lost its CPU to the host for
 * part of the time can be told from a slow one (the C peer records the same).
 */
export class Windows {
  private readonly n = new Float64Array(8192);
  private readonly ms = new Float64Array(8192);
  private count = 0;
  private t0 = 0;
  private done0 = 0;
  start(t: number, done: number): void {
    this.count = 0;
    this.t0 = t;
    this.done0 = done;
  }
  /** at a clock check: close the window if it is long enough */
  tick(t: number, done: number): void {
    if (t - this.t0 >= WINDOW_MS) this.push(t, done);
  }
  /** at the end: keep a last partial window unless it is too short to mean anything */
  close(t: number, done: number): void {
    if (t - this.t0 >= WINDOW_MS / 5) this.push(t, done);
  }
  private push(t: number, done: number): void {
    if (this.count < this.n.length) {
      this.n[this.count] = done - this.done0;
      this.ms[this.count] = t - this.t0;
      this.count++;
    }
    this.t0 = t;
    this.done0 = done;
  }
  /** [completions, ns] per window, as the C peer prints them */
  toPairs(): [number, number][] {
    const out: [number, number][] = [];
    for (let i = 0; i < this.count; i++) out.push([this.n[i], Math.round(this.ms[i] * 1e6)]);
    return out;
  }
}

/** the median of the per-window rates (per second); null without windows */
export function medianWindowRate(windows: readonly (readonly [number, number])[]): number | null {
  const rates = windows.filter(([, ns]) => ns > 0).map(([n, ns]) => (n * 1e9) / ns);
  if (rates.length === 0) return null;
  rates.sort((a, b) => a - b);
  const m = rates.length >> 1;
  return rates.length % 2 ? rates[m] : (rates[m - 1] + rates[m]) / 2;
}
