// The rx backlog's bounds and its copy: frames from netback's own memory or from anywhere else
// (a VM port's software-GSO segments) come back byte for byte, oldest first, and a full backlog
// refuses rather than grows.
import { describe, expect, it } from 'vitest';
import { newPacketMeta } from '../packet/meta.js';
import { Backlog } from './backlog.js';

const frameIn = (mem: Uint8Array, off: number, len: number, seed: number) => {
  for (let i = 0; i < len; i++) mem[off + i] = (seed + i) & 0xff;
  return { mem, off, len, meta: newPacketMeta() };
};

describe('rx backlog', () => {
  it('keeps frames from its own memory and from foreign memory, oldest first', () => {
    const mem = new Uint8Array(8192);
    const b = new Backlog(mem, 4096, 4096, 8);
    const foreign = new Uint8Array(2000);
    expect(b.push(frameIn(mem, 0, 100, 1), 0)).toBe(true);
    expect(b.push(frameIn(foreign, 500, 1000, 7), 0)).toBe(true);
    const first = b.peek(0)!;
    expect([...first.mem.subarray(first.off, first.off + first.len)]).toEqual(Array.from({ length: 100 }, (_, i) => (1 + i) & 0xff));
    b.pop();
    const second = b.peek(0)!;
    expect(second.mem).toBe(mem);
    expect([...second.mem.subarray(second.off, second.off + second.len)]).toEqual(Array.from({ length: 1000 }, (_, i) => (7 + i) & 0xff));
  });

  it('refuses past its bytes or its frames', () => {
    const b = new Backlog(new Uint8Array(4096), 0, 4096, 3);
    const src = new Uint8Array(3000);
    expect(b.push(frameIn(src, 0, 3000, 0), 0)).toBe(true);
    expect(b.push(frameIn(src, 0, 1500, 0), 0)).toBe(false);
    expect(b.push(frameIn(src, 0, 500, 0), 0)).toBe(true);
    expect(b.push(frameIn(src, 0, 10, 0), 0)).toBe(true);
    expect(b.push(frameIn(src, 0, 10, 0), 0)).toBe(false);
    expect(b.count).toBe(3);
  });
});
