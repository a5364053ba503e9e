// A device's register page as the device model sees it: 32-bit registers in memory shared with
// the owning driver domain, so every access is an Atomics load or store (the driver writes them
// from another process). 64-bit registers are two little-endian halves.
const TWO32 = 4294967296;

export class RegisterPage {
  private readonly words: Int32Array;

  constructor(bar: Uint8Array, size: number) {
    this.words = new Int32Array(bar.buffer, bar.byteOffset, size / 4);
  }

  get(off: number): number {
    return Atomics.load(this.words, off >> 2);
  }

  get64(off: number): number {
    return (Atomics.load(this.words, off >> 2) >>> 0) + (Atomics.load(this.words, (off >> 2) + 1) >>> 0) * TWO32;
  }

  put(off: number, v: number): void {
    Atomics.store(this.words, off >> 2, v | 0);
  }

  /** Reset: every register reads 0. */
  clear(): void {
    this.words.fill(0);
  }
}
