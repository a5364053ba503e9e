import { describe, expect, it } from 'vitest';
import { SRING_HEADER_SIZE, SRING_W_REQ_EVENT, SRING_W_REQ_PROD, SRING_W_RSP_EVENT, SRING_W_RSP_PROD, floorPow2, ringBytes, ringSlots } from './sring.js';

describe('sring geometry', () => {
  it('rounds the slot count down to a power of two', () => {
    expect(ringSlots(4096, 112)).toBe(32); // 36 fit
    expect(ringSlots(4096, 12)).toBe(256); // 336 fit
    expect(ringSlots(4096, 8)).toBe(256); // 504 fit
    expect(ringSlots(64 + 112, 112)).toBe(1);
    expect(ringSlots(64 + 111, 112)).toBe(0);
    expect(ringSlots(64, 8)).toBe(0);
    expect(ringSlots(64 + 1024 * 8, 8)).toBe(1024);
    expect(ringSlots(64 + 1023 * 8, 8)).toBe(512);
  });

  it('sizes rings by page order', () => {
    expect([0, 1, 2, 3, 4].map(ringBytes)).toEqual([4096, 8192, 16384, 32768, 65536]);
    expect(() => ringBytes(5)).toThrow(RangeError);
    expect(() => ringBytes(-1)).toThrow(RangeError);
    expect(() => ringSlots(4096, 0)).toThrow(RangeError);
  });

  it('word indices match byte offsets', () => {
    expect([SRING_W_REQ_PROD, SRING_W_REQ_EVENT, SRING_W_RSP_PROD, SRING_W_RSP_EVENT]).toEqual([0, 1, 2, 3]);
    expect(SRING_HEADER_SIZE).toBe(64);
    expect([0, 1, 2, 3, 5, 1000, 1024].map(floorPow2)).toEqual([0, 1, 2, 2, 4, 512, 1024]);
  });
});
