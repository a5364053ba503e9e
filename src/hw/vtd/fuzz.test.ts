import { describe, expect, it } from 'vitest';
import { REG } from '../../abi/vtd-registers.js';
import { makeTestbed } from './testbed.js';
import { xorshift32 as rng } from '../../fuzz/prng.js';

describe('hostile driver and hostile tables', () => {
  it('random register writes, random table contents and random DMA never throw', () => {
    for (const seed of [1, 2, 3]) {
      const r = rng(seed);
      const tb = makeTestbed({ memSize: 2 ** 24, tablesAt: 0x10_0000, faultRecords: 4, cachingMode: seed === 2 });
      const offsets = Object.values(REG).flatMap((o) => [o, o + 4]);
      const big = (): bigint => (BigInt(r()) << 32n) | BigInt(r());
      for (let i = 0; i < 20_000; i++) {
        const k = r() % 10;
        if (k < 4) {
          const off = r() % 3 === 0 ? r() % 0x300 : offsets[r() % offsets.length];
          const size = r() % 2 === 0 ? 4 : 8;
          tb.unit.mmioWrite(off, size, r() % 4 === 0 ? big() & 0xfffffn : big());
        } else if (k < 6) {
          // scribble over the low memory where the root, context, page tables and queue live
          const pa = 0x10_0000 + (r() % 64) * 8;
          const b = new Uint8Array(8);
          new DataView(b.buffer).setBigUint64(0, r() % 2 === 0 ? big() : big() & 0xfffff003n, true);
          tb.mem.write(pa, b);
        } else if (k < 9) {
          tb.unit.translate(r() & 0xffff, r() % 5 === 0 ? Number(big() >> 11n) : r() * 4096 + (r() & 0xfff), r() % 2 === 0 ? 'r' : 'w');
        } else {
          tb.unit.dmaWrite(r() & 0xffff, r() * 16, new Uint8Array(r() % 9000));
        }
      }
      expect(tb.unit.regs.ignored).toBeGreaterThan(0);
      for (const off of offsets) tb.unit.mmioRead(off, off % 8 === 0 ? 8 : 4);
    }
  });
});
