// One guest-memory region for the virtio unit tests, which drive a device against rings they lay
// out by hand: a 1 MiB memfd at guest address 0x100000, registered as a vhost-user frontend would
// (with a frontend virtual address the rings are given in).
import { native } from '../../native/index.js';
import { GuestMemory } from '../guest-memory.js';

export const GPA = 0x100000;
export const MEM = 1 << 20;
/** where the "frontend" has the region mapped: ring addresses are given in this space */
export const UADDR = 0x7f0000000000;

export interface TestMemory {
  mem: GuestMemory;
  /** the whole region, offset 0 = GPA, as bytes and as a DataView */
  view: Uint8Array;
  bytes: DataView;
  close(): void;
}

export function testMemory(name: string, slots: number): TestMemory {
  const fd = native.memfdCreate(name, MEM);
  const mem = new GuestMemory(slots);
  try {
    mem.add({ gpa: BigInt(GPA), size: BigInt(MEM), uaddr: BigInt(UADDR), mmapOffset: 0n }, fd);
  } finally {
    native.close(fd);
  }
  const v = mem.view(GPA, MEM)!;
  return { mem, view: v, bytes: new DataView(v.buffer, v.byteOffset, v.byteLength), close: () => mem.close() };
}
