// Reusable I/O buffers for NBD payloads, in power-of-two size classes. A request borrows one for
// its data and gives it back once its reply is on the socket, so steady-state traffic allocates
// no payload memory.
const MIN_SHIFT = 12;

export class BufferPool {
  private readonly classes: Buffer[][] = [];
  private retained = 0;

  constructor(private readonly maxRetained = 128 << 20) {}

  /** a buffer of at least `n` bytes (its length is the class size) */
  take(n: number): Buffer {
    let shift = MIN_SHIFT;
    while (1 << shift < n) shift++;
    const free = this.classes[shift];
    const b = free?.pop();
    if (b !== undefined) {
      this.retained -= b.length;
      return b;
    }
    return Buffer.allocUnsafeSlow(1 << shift);
  }

  give(b: Buffer): void {
    if (this.retained + b.length > this.maxRetained) return;
    let shift = MIN_SHIFT;
    while (1 << shift < b.length) shift++;
    if (1 << shift !== b.length) return;
    (this.classes[shift] ??= []).push(b);
    this.retained += b.length;
  }
}
