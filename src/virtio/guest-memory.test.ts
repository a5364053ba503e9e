import { describe, expect, it } from 'vitest';
import { native } from '../native/index.js';
import { GuestMemory, LOCATE_MAX } from './guest-memory.js';

describe('GuestMemory.locate', () => {
  it('finds small ranges in a region larger than a window, across the window edge, without views per call', () => {
    const GiB = 2 ** 30;
    const size = 2 * GiB + 4096; // sparse: nothing is touched but a few pages
    const fd = native.memfdCreate('rs-guest-mem-test', size);
    const mem = new GuestMemory(8);
    try {
      mem.add({ gpa: 0x100000n, size: BigInt(size), uaddr: 0x7f0000000000n, mmapOffset: 0n }, fd);
      const edge = 0x100000 + GiB - 8; // 16 bytes straddling the first window's end
      mem.view(edge, 16)!.set([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]);
      const at = mem.locate(edge, 16);
      expect(at).toBe(GiB - 8);
      expect([...mem.foundBytes.subarray(at, at + 16)]).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]);
      const w0 = mem.foundBytes;
      const past = mem.locate(0x100000 + GiB + 5, 4);
      expect(past).toBe(5);
      expect(mem.foundBytes).not.toBe(w0);
      mem.locate(edge, 16);
      expect(mem.foundBytes, 'a window is made once and kept').toBe(w0);
      expect(mem.found.getUint32(at, true)).toBe(0x04030201);
      // the last bytes of the region, and nothing past it
      expect(mem.locate(0x100000 + size - 4, 4)).toBeGreaterThanOrEqual(0);
      expect(mem.locate(0x100000 + size - 3, 4)).toBe(-1);
      expect(mem.locate(0x0fffff, 2)).toBe(-1);
      expect(mem.locate(0x100000, LOCATE_MAX + 1)).toBe(-1);
    } finally {
      mem.close();
      native.close(fd);
    }
  });
});
