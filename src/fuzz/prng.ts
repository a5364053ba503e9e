// xorshift32: reproducible garbage for fuzz tests, so a failure replays from its seed.

/** A generator of u32 values from `seed` (0 counts as 1: xorshift never leaves 0). */
export function xorshift32(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s;
  };
}
