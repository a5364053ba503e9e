import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { native } from '../../src/native/index.js';
import { HwDmaMemory } from './dma-memory.js';
import { HV_AREA_BASE, HV_AREA_BYTES, PAGE, SLOT } from '../../src/hw/phys-map.js';

describe('hw DMA memory: pages with transfers in flight', () => {
  const fds: number[] = [];
  afterEach(() => {
    for (const f of fds.splice(0)) native.close(f);
  });

  function memWithDomain(domid: number, frames: number): HwDmaMemory {
    const area = native.memfdCreate('area', HV_AREA_BYTES);
    fds.push(area);
    const mem = new HwDmaMemory(area);
    const f = Array.from({ length: frames }, () => native.memfdCreate('frame', PAGE));
    mem.addFrames(domid, frames, 0, f);
    return mem;
  }

  it('counts every page a pinned segment covers, and only those, until it is unpinned', () => {
    const mem = memWithDomain(3, 8);
    const out = new Float64Array(2);
    const view = mem.locate(3 * SLOT, out) as Uint8Array;
    expect(view).not.toBeNull();
    const pfn = (gfn: number) => (3 * SLOT) / PAGE + gfn;
    // bytes 100 .. 2*PAGE+10: pages 0, 1 and 2
    mem.pin(view, 100, 2 * PAGE - 90);
    mem.pin(view, PAGE, PAGE); // page 1 again
    expect([0, 1, 2, 3].map((g) => mem.inFlight(pfn(g)))).toEqual([1, 2, 1, 0]);
    mem.unpin(view, 100, 2 * PAGE - 90);
    expect([0, 1, 2].map((g) => mem.inFlight(pfn(g)))).toEqual([0, 1, 0]);
    mem.unpin(view, PAGE, PAGE);
    expect(mem.inFlight(pfn(1))).toBe(0);
    mem.close();
  });

  it('close unmaps the table area too', () => {
    const maps = () => readFileSync('/proc/self/maps', 'utf8').split('\n').filter((l) => l.includes('/memfd:dma-close-area')).length;
    const area = native.memfdCreate('dma-close-area', HV_AREA_BYTES);
    fds.push(area);
    const mem = new HwDmaMemory(area);
    expect(maps()).toBeGreaterThan(0);
    mem.close();
    expect(maps()).toBe(0);
    // and nothing reaches it any more
    expect(mem.locate(HV_AREA_BASE, new Float64Array(2))).toBeNull();
  });
});
