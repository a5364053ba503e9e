import { describe, expect, it } from 'vitest';
import { DmaList } from '../blkdev/device.js';
import { PrpCursor, prpBytes } from './nvme-prp.js';

const P = 4096;
const BUS = 2 ** 32;

/** blkif segments (page index, first_sect, last_sect) as blkback turns them into a DmaList */
function segs(list: [number, number, number][]): DmaList {
  const l = new DmaList(list.length);
  for (const [page, first, last] of list) l.push(BUS + page * P + first * 512, (last - first + 1) * 512);
  return l;
}

function listEntries(dv: DataView, n: number): number[] {
  return Array.from({ length: n }, (_, i) => dv.getUint32(i * 8, true) + dv.getUint32(i * 8 + 4, true) * 2 ** 32);
}

describe('PRPs from blkif segments', () => {
  it('accepts what PRPs can say: an offset only in the first page, page ends everywhere but the last', () => {
    expect(prpBytes(segs([[0, 0, 7]]))).toBe(P);
    expect(prpBytes(segs([[0, 3, 5]]))).toBe(3 * 512); // one partial page on its own
    expect(prpBytes(segs([[5, 2, 7], [9, 0, 7], [3, 0, 4]]))).toBe(6 * 512 + P + 5 * 512);
  });

  it('refuses segment lists that need a bounce buffer', () => {
    expect(prpBytes(segs([[0, 0, 6], [1, 0, 7]]))).toBe(-1); // first ends mid-page
    expect(prpBytes(segs([[0, 0, 7], [1, 1, 7]]))).toBe(-1); // a later one starts mid-page
    expect(prpBytes(segs([[0, 0, 7], [1, 0, 3], [2, 0, 7]]))).toBe(-1); // a middle one ends short
    expect(prpBytes(new DmaList(1))).toBe(-1); // nothing
    const odd = new DmaList(1);
    odd.push(BUS + 100, 512); // not sector aligned: cutting it at a page would split a block
    expect(prpBytes(odd)).toBe(-1);
    const neg = new DmaList(1);
    neg.push(-4096, 4096);
    expect(prpBytes(neg)).toBe(-1);
  });

  it('one page: PRP1 only; two: PRP2 is the second page; more: PRP2 is the list page', () => {
    const list = new DataView(new ArrayBuffer(P));
    const c = new PrpCursor();
    c.next(segs([[4, 2, 7]]), 64, list, 0x9000);
    expect([c.prp1, c.prp2, c.bytes]).toEqual([BUS + 4 * P + 1024, 0, 3072]);

    c.reset();
    c.next(segs([[4, 2, 7], [7, 0, 1]]), 64, list, 0x9000);
    expect([c.prp1, c.prp2, c.bytes]).toEqual([BUS + 4 * P + 1024, BUS + 7 * P, 3072 + 1024]);

    c.reset();
    c.next(segs([[4, 0, 7], [7, 0, 7], [1, 0, 7], [2, 0, 0]]), 64, list, 0x9000);
    expect([c.prp1, c.prp2, c.bytes]).toEqual([BUS + 4 * P, 0x9000, 3 * P + 512]);
    expect(listEntries(list, 3)).toEqual([BUS + 7 * P, BUS + P, BUS + 2 * P]);
  });

  it('cuts a long transfer into commands of at most maxPages pages, each a whole number of blocks', () => {
    const pages = Array.from({ length: 10 }, (_, i) => [20 + i * 3, 0, 7] as [number, number, number]);
    pages[0] = [20, 4, 7];
    const l = segs(pages);
    const list = new DataView(new ArrayBuffer(P));
    const c = new PrpCursor();
    const seen: { prp1: number; bytes: number; entries: number[] }[] = [];
    let total = 0;
    while (total < l.bytes) {
      c.next(l, 4, list, 0x9000);
      seen.push({ prp1: c.prp1, bytes: c.bytes, entries: c.prp2 === 0x9000 ? listEntries(list, 3) : [c.prp2] });
      total += c.bytes;
      expect(c.bytes % 512).toBe(0);
    }
    expect(total).toBe(l.bytes);
    expect(seen.map((s) => s.bytes)).toEqual([2048 + 3 * P, 4 * P, 2 * P]);
    expect(seen[0].prp1).toBe(BUS + 20 * P + 2048);
    expect(seen[0].entries).toEqual([BUS + 23 * P, BUS + 26 * P, BUS + 29 * P]);
    expect(seen[1].prp1).toBe(BUS + 32 * P);
    expect(seen[2]).toMatchObject({ prp1: BUS + 44 * P, entries: [BUS + 47 * P] });
  });

  it('with an MDTS of one page, every command is PRP1 alone', () => {
    const l = segs([[3, 4, 7], [8, 0, 7], [5, 0, 1]]);
    const list = new DataView(new ArrayBuffer(P));
    const c = new PrpCursor();
    const seen: [number, number, number][] = [];
    for (let total = 0; total < 2048 + P + 1024; total += c.bytes) {
      c.next(l, 1, list, 0x9000);
      seen.push([c.prp1, c.prp2, c.bytes]);
    }
    expect(seen).toEqual([[BUS + 3 * P + 2048, 0, 2048], [BUS + 8 * P, 0, P], [BUS + 5 * P, 0, 1024]]);
    expect(() => c.next(l, 0, list, 0x9000)).toThrow(RangeError);
  });
});
