import { describe, expect, it } from 'vitest';
import * as blkifW from './blkif.js';
import {
  BLKIF_OP_DISCARD,
  BLKIF_OP_FLUSH_DISKCACHE,
  BLKIF_OP_INDIRECT,
  BLKIF_OP_READ,
  BLKIF_OP_WRITE,
  BLKIF_RING,
  BLKIF_SEGS_PER_INDIRECT_FRAME,
  blkifOpName,
  blkifRequest,
  blkifResponse,
  blkifSegmentValid,
  newBlkifRequest,
  newBlkifResponse,
  numberToVdev,
  readBlkifSegments,
  u64,
  vdevToNumber,
  writeBlkifDiscard,
  writeBlkifIndirect,
  writeBlkifIndirectGref,
  writeBlkifResponse,
  writeBlkifRw,
  writeBlkifSegment,
} from './blkif.js';

function hex(u8: Uint8Array, from: number, to: number): string {
  return Buffer.from(u8.subarray(from, to)).toString('hex');
}

describe('blkif request bytes', () => {
  it('writes a read/write request at the x86-64 offsets', () => {
    const u8 = new Uint8Array(256).fill(0xee);
    const dv = new DataView(u8.buffer);
    writeBlkifRw(dv, 16, BLKIF_OP_WRITE, 2, 0xca01, 0x0000_0102_0304_0506, 0x0000_0a0b_0c0d_0e0f);
    writeBlkifSegment(dv, 16, 0, 0x11223344, 1, 6);
    writeBlkifSegment(dv, 16, 1, 0x55667788, 0, 7);
    expect(hex(u8, 16, 24)).toBe('010201ca00000000'); // op, nseg, handle LE, 4 pad bytes zeroed
    expect(hex(u8, 24, 32)).toBe('0605040302010000'); // id u64 LE
    expect(hex(u8, 32, 40)).toBe('0f0e0d0c0b0a0000'); // sector u64 LE
    expect(hex(u8, 40, 48)).toBe('4433221101060000'); // seg0: gref, first, last, pad
    expect(hex(u8, 48, 56)).toBe('8877665500070000');
    expect(u8[56]).toBe(0xee); // nothing past the segments written
    const r = blkifRequest.read(dv, 16, newBlkifRequest());
    expect(r.operation).toBe(BLKIF_OP_WRITE);
    expect(r.nrSegments).toBe(2);
    expect(r.handle).toBe(0xca01);
    expect(u64(r.idLo, r.idHi)).toBe(0x0000_0102_0304_0506);
    expect(r.sectorNumber).toBe(0x0000_0a0b_0c0d_0e0f);
    expect([...r.segGref.subarray(0, 2)]).toEqual([0x11223344, 0x55667788]);
    expect([...r.segFirstSect.subarray(0, 2)]).toEqual([1, 0]);
    expect([...r.segLastSect.subarray(0, 2)]).toEqual([6, 7]);
  });

  it('keeps a u64 id bit for bit', () => {
    const dv = new DataView(new ArrayBuffer(112));
    const r = newBlkifRequest();
    r.operation = BLKIF_OP_READ;
    r.idLo = 0xffffffff;
    r.idHi = 0xdeadbeef;
    blkifRequest.write(dv, 0, r);
    expect(dv.getBigUint64(8, true)).toBe(0xdeadbeefffffffffn);
    const back = blkifRequest.read(dv, 0, newBlkifRequest());
    expect([back.idLo, back.idHi]).toEqual([0xffffffff, 0xdeadbeef]);
  });

  it('clamps the segments it decodes to 11 but reports the count it saw', () => {
    const dv = new DataView(new ArrayBuffer(112));
    writeBlkifRw(dv, 0, BLKIF_OP_READ, 200, 0, 1, 0);
    const r = blkifRequest.read(dv, 0, newBlkifRequest());
    expect(r.nrSegments).toBe(200); // the backend must refuse it; decoding never runs off the slot
    writeBlkifRw(dv, 0, BLKIF_OP_FLUSH_DISKCACHE, 0, 0, 1, 0);
    expect(blkifRequest.read(dv, 0, r).nrSegments).toBe(0);
  });

  it('writes and reads a discard request', () => {
    const u8 = new Uint8Array(112);
    const dv = new DataView(u8.buffer);
    writeBlkifDiscard(dv, 0, 1, 0x0102, 77, 2048, 2 ** 33 + 1);
    expect(hex(u8, 0, 4)).toBe('05010201');
    expect(dv.getBigUint64(24, true)).toBe(2n ** 33n + 1n);
    const r = blkifRequest.read(dv, 0, newBlkifRequest());
    expect(r.operation).toBe(BLKIF_OP_DISCARD);
    expect(r.discardFlag).toBe(1);
    expect(r.handle).toBe(0x0102);
    expect(r.idLo).toBe(77);
    expect(r.sectorNumber).toBe(2048);
    expect(r.nrSectors).toBe(2 ** 33 + 1);
    expect(r.nrSegments).toBe(0);
  });

  it('writes and reads an indirect request', () => {
    const u8 = new Uint8Array(112);
    const dv = new DataView(u8.buffer);
    writeBlkifIndirect(dv, 0, BLKIF_OP_WRITE, 300, 0x0a0b, 5, 4096);
    for (let i = 0; i < 8; i++) writeBlkifIndirectGref(dv, 0, i, 1000 + i);
    expect(hex(u8, 0, 4)).toBe('06012c01'); // op 6, indirect_op 1, nr_segments 300 LE
    expect(dv.getUint16(24, true)).toBe(0x0a0b);
    expect(dv.getUint32(28, true)).toBe(1000);
    expect(dv.getUint32(28 + 28, true)).toBe(1007);
    const r = blkifRequest.read(dv, 0, newBlkifRequest());
    expect(r.operation).toBe(BLKIF_OP_INDIRECT);
    expect(r.indirectOp).toBe(BLKIF_OP_WRITE);
    expect(r.nrSegments).toBe(300);
    expect(r.handle).toBe(0x0a0b);
    expect([...r.indirectGrefs]).toEqual([1000, 1001, 1002, 1003, 1004, 1005, 1006, 1007]);
    const again = new DataView(new ArrayBuffer(112));
    blkifRequest.write(again, 0, r);
    expect(hex(new Uint8Array(again.buffer), 0, 64)).toBe(hex(u8, 0, 64));
  });

  it('reads a page of indirect segments', () => {
    const page = new DataView(new ArrayBuffer(4096));
    for (let i = 0; i < BLKIF_SEGS_PER_INDIRECT_FRAME; i++) {
      page.setUint32(i * 8, 5000 + i, true);
      page.setUint8(i * 8 + 4, i % 8);
      page.setUint8(i * 8 + 5, 7);
    }
    const g = new Uint32Array(600);
    const f = new Uint8Array(600);
    const l = new Uint8Array(600);
    readBlkifSegments(page, 0, 512, g, f, l, 10);
    expect(g[10]).toBe(5000);
    expect(g[521]).toBe(5511);
    expect(f[13]).toBe(3);
    expect(l[521]).toBe(7);
  });

  it('validates segment sector ranges', () => {
    expect(blkifSegmentValid(0, 7)).toBe(true);
    expect(blkifSegmentValid(3, 3)).toBe(true);
    expect(blkifSegmentValid(4, 3)).toBe(false);
    expect(blkifSegmentValid(0, 8)).toBe(false);
  });

  it('writes every response byte, padding zero (XSA-216)', () => {
    const u8 = new Uint8Array(32).fill(0xaa);
    const dv = new DataView(u8.buffer);
    writeBlkifResponse(dv, 8, 0x01020304, 0x05060708, BLKIF_OP_WRITE, -2);
    expect(hex(u8, 8, 24)).toBe('0403020108070605' + '0100' + 'feff' + '00000000');
    expect(u8[7]).toBe(0xaa);
    expect(u8[24]).toBe(0xaa);
    const r = blkifResponse.read(dv, 8, newBlkifResponse());
    expect(r).toEqual({ idLo: 0x01020304, idHi: 0x05060708, operation: BLKIF_OP_WRITE, status: -2 });
  });

  it('names operations', () => {
    expect(blkifOpName(BLKIF_OP_INDIRECT)).toBe('indirect');
    expect(blkifOpName(99)).toBe('op(99)');
    expect(BLKIF_RING).toEqual({ name: 'blkif', entrySize: 112, requestSize: 112, responseSize: 16 });
  });
});

describe('virtual disk ids', () => {
  it('numbers xvd, hd, sd and dNpM names as libxl does', () => {
    expect(vdevToNumber('xvda')).toBe(51712);
    expect(vdevToNumber('xvda1')).toBe(51713);
    expect(vdevToNumber('xvdb')).toBe(51728);
    expect(vdevToNumber('xvdp15')).toBe((202 << 8) | (15 << 4) | 15);
    expect(vdevToNumber('xvdq')).toBe((1 << 28) | (16 << 8));
    expect(vdevToNumber('xvda16')).toBe((1 << 28) | 16); // partition >= 16 needs the extended form
    expect(vdevToNumber('xvdaa')).toBe((1 << 28) | (26 << 8));
    expect(vdevToNumber('d0p1')).toBe(51713);
    expect(vdevToNumber('d100')).toBe((1 << 28) | (100 << 8));
    expect(vdevToNumber('hda')).toBe(3 << 8);
    expect(vdevToNumber('hdb2')).toBe((3 << 8) | 64 | 2);
    expect(vdevToNumber('hdc')).toBe(22 << 8);
    expect(vdevToNumber('sdb3')).toBe((8 << 8) | 16 | 3);
    expect(vdevToNumber('51712')).toBe(51712);
  });

  it('refuses what names nothing', () => {
    for (const bad of ['', 'xvd', 'xvdA', 'vda', 'hde', 'hda64', 'sdq', 'sda16', 'xvda256', 'd1p256', '12', 'xvda01', 'd01']) {
      expect([bad, vdevToNumber(bad)]).toEqual([bad, null]);
    }
  });

  it('names numbers and round-trips', () => {
    expect(numberToVdev(51712)).toBe('xvda');
    expect(numberToVdev(51713)).toBe('xvda1');
    expect(numberToVdev((1 << 28) | (26 << 8) | 3)).toBe('xvdaa3');
    expect(numberToVdev(3 << 8)).toBe('hda');
    expect(numberToVdev((22 << 8) | 64 | 5)).toBe('hdd5');
    expect(numberToVdev(99 << 8)).toBeNull();
    for (const name of ['xvda', 'xvdz9', 'xvdq', 'xvdzz200', 'hdb63', 'sdp15', 'xvda16']) {
      const n = vdevToNumber(name);
      expect(n).not.toBeNull();
      expect(numberToVdev(n!)).toBe(name);
    }
  });
});

describe('blkif word accessors (the ring fast path)', () => {
  it('decode every layout exactly as the DataView readers do, over random slot bytes', () => {
    const m = blkifW;
    const buf = new ArrayBuffer(64 + 112 * 4);
    const view = new DataView(buf);
    const words = new Int32Array(buf);
    const bytes = new Uint8Array(buf);
    let seed = 12345;
    const rnd = (): number => (seed = (seed * 1103515245 + 12345) >>> 0) >>> 24;
    for (let trial = 0; trial < 400; trial++) {
      for (let i = 0; i < bytes.length; i++) bytes[i] = rnd();
      const off = 64 + 112 * (trial & 3);
      const op = [BLKIF_OP_READ, BLKIF_OP_WRITE, BLKIF_OP_FLUSH_DISKCACHE, BLKIF_OP_DISCARD, BLKIF_OP_INDIRECT, 0xff][trial % 6];
      bytes[off] = op;
      if (trial % 3 === 0) bytes[off + 1] = trial % 13; // small direct segment counts too
      const a = blkifRequest.read(view, off, newBlkifRequest());
      const b = m.readBlkifRequestWords(words, off >> 2, newBlkifRequest());
      expect(b).toEqual(a);
    }
  });

  it('write requests and responses byte for byte like the DataView writers', () => {
    const m = blkifW;
    for (const [id, sector] of [
      [7, 56],
      [0xffffffff, 2 ** 40 + 3],
      [2 ** 52 + 5, 0],
    ]) {
      const a = new ArrayBuffer(64 + 112);
      const b = new ArrayBuffer(64 + 112);
      new Uint8Array(a).fill(0xcc);
      new Uint8Array(b).fill(0xcc);
      writeBlkifRw(new DataView(a), 64, BLKIF_OP_WRITE, 2, 0x1234, id, sector);
      writeBlkifSegment(new DataView(a), 64, 1, 0x89abcdef, 3, 6);
      m.writeBlkifRwWords(new Int32Array(b), 16, BLKIF_OP_WRITE, 2, 0x1234, id, sector);
      m.writeBlkifSegmentWords(new Int32Array(b), 16, 1, 0x89abcdef, 3, 6);
      expect(new Uint8Array(b)).toEqual(new Uint8Array(a));
    }
    const rsp = new ArrayBuffer(16);
    const w = new Int32Array(rsp);
    w[0] = 0xdeadbeef | 0;
    w[1] = 0x12345678;
    w[2] = m.blkifResponseWord2(BLKIF_OP_INDIRECT, -2);
    w[3] = 0;
    expect(m.readBlkifResponseWords(w, 0, newBlkifResponse())).toEqual(blkifResponse.read(new DataView(rsp), 0, newBlkifResponse()));
    expect(m.readBlkifResponseWords(w, 0, newBlkifResponse())).toEqual({ idLo: 0xdeadbeef, idHi: 0x12345678, operation: BLKIF_OP_INDIRECT, status: -2 });
  });
});
