// The dirty log's bit arithmetic against the layout QEMU reads: bit p%8 of byte p/8 for page p.
import { afterEach, describe, expect, it } from 'vitest';
import { native } from '../native/index.js';
import { DirtyLog } from './dirty-log.js';

const cleanup: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanup.splice(0)) c();
});

function logOf(size: number, offset = 0): { log: DirtyLog; bits: Uint8Array } {
  const fd = native.memfdCreate('dirty-log-test', offset + size);
  const log = DirtyLog.adopt(fd, size, offset);
  const bits = new Uint8Array(native.mmap(fd, offset + size, true, 0), offset, size);
  native.close(fd);
  cleanup.push(() => log.close(), () => native.munmap(bits.buffer as ArrayBuffer));
  return { log, bits };
}

describe('dirty log', () => {
  it('marks every page a range touches, straddling pages included, at the offset QEMU gave', () => {
    const { log, bits } = logOf(16, 4096);
    log.mark(0, 1); // page 0
    log.mark(0x9fff, 2); // pages 9 and 10
    log.mark(0x3f000, 0x1000); // page 63 exactly
    log.mark(0x5000, 0); // nothing
    expect([...bits.subarray(0, 8)]).toEqual([0b1, 0b110, 0, 0, 0, 0, 0, 0b10000000]);
    expect(log.covers).toBe(16 * 8 * 4096);
  });

  it('counts marks past its end instead of writing outside the bitmap', () => {
    const { log, bits } = logOf(1);
    log.mark(7 * 4096, 2 * 4096); // page 7 in, page 8 out
    expect(bits[0]).toBe(0x80);
    expect(log.outside).toBe(1);
  });

  it('refuses a log that does not fit its fd, or is empty', () => {
    const fd = native.memfdCreate('dirty-log-test', 4096);
    try {
      expect(() => DirtyLog.adopt(fd, 8192, 0)).toThrow(/runs past its fd \(4096 bytes\)/);
      expect(() => DirtyLog.adopt(fd, 0, 0)).toThrow(/dirty log of 0 bytes/);
    } finally {
      native.close(fd);
    }
  });
});
