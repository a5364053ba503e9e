// xen/include/public/io/blkif.h, x86_64 ABI (protocol names from io/protocols.h): the one definition
// of the block ring's bytes, used by blkfront and blkback alike.
//
// The accessors read and write fields at a byte offset in a DataView and fill caller-owned objects,
// so the data path allocates nothing per request. u64 fields are handled as two u32 halves: a
// BigInt would allocate, and a backend must echo a frontend's id bit for bit even above 2^53.

import type { RingLayout } from './sring.js';

export const BLKIF_OP_READ = 0;
export const BLKIF_OP_WRITE = 1;
export const BLKIF_OP_WRITE_BARRIER = 2;
export const BLKIF_OP_FLUSH_DISKCACHE = 3;
export const BLKIF_OP_RESERVED_1 = 4;
export const BLKIF_OP_DISCARD = 5;
export const BLKIF_OP_INDIRECT = 6;

export const BLKIF_RSP_EOPNOTSUPP = -2;
export const BLKIF_RSP_ERROR = -1;
export const BLKIF_RSP_OKAY = 0;

export const BLKIF_MAX_SEGMENTS_PER_REQUEST = 11;
export const BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST = 8;
export const BLKIF_SEGMENT_SIZE = 8;
/** 4096 / sizeof(struct blkif_request_segment) */
export const BLKIF_SEGS_PER_INDIRECT_FRAME = 512;
export const BLKIF_DISCARD_SECURE = 1;

export const VDISK_CDROM = 0x1;
export const VDISK_REMOVABLE = 0x2;
export const VDISK_READONLY = 0x4;

/** blkif sectors are always 512 bytes, whatever the medium's sector-size */
export const BLKIF_SECTOR_SIZE = 512;
export const BLKIF_SECTORS_PER_PAGE = 8;

/** values of the frontend's `protocol` key; blkback assumes x86_32 when it is absent */
export const XEN_IO_PROTO_ABI_X86_64 = 'x86_64-abi';
export const XEN_IO_PROTO_ABI_X86_32 = 'x86_32-abi';

export const BLKIF_REQUEST_SIZE = 112;
export const BLKIF_REQUEST_DISCARD_SIZE = 32;
export const BLKIF_REQUEST_INDIRECT_SIZE = 64;
export const BLKIF_RESPONSE_SIZE = 16;

// struct blkif_request
export const BLKIF_REQ_OPERATION = 0;
export const BLKIF_REQ_NR_SEGMENTS = 1;
export const BLKIF_REQ_HANDLE = 2;
export const BLKIF_REQ_ID = 8;
export const BLKIF_REQ_SECTOR_NUMBER = 16;
export const BLKIF_REQ_SEG = 24;
// struct blkif_request_segment
export const BLKIF_SEG_GREF = 0;
export const BLKIF_SEG_FIRST_SECT = 4;
export const BLKIF_SEG_LAST_SECT = 5;
// struct blkif_request_discard
export const BLKIF_DISCARD_FLAG = 1;
export const BLKIF_DISCARD_NR_SECTORS = 24;
// struct blkif_request_indirect
export const BLKIF_INDIRECT_OP = 1;
export const BLKIF_INDIRECT_NR_SEGMENTS = 2;
export const BLKIF_INDIRECT_HANDLE = 24;
export const BLKIF_INDIRECT_GREFS = 28;
// struct blkif_response
export const BLKIF_RSP_ID = 0;
export const BLKIF_RSP_OPERATION = 8;
export const BLKIF_RSP_STATUS = 10;

/** one 4 KiB page (order 0) holds 32 slots, order 1 64, order 4 512 */
export const BLKIF_RING: RingLayout = Object.freeze({
  name: 'blkif',
  entrySize: BLKIF_REQUEST_SIZE,
  requestSize: BLKIF_REQUEST_SIZE,
  responseSize: BLKIF_RESPONSE_SIZE,
});

const TWO32 = 4294967296;

/**
 * A decoded request of any of the three layouts (selected by `operation`). Fields that the layout
 * does not carry are left as they were; `segments`/`indirectGrefs` are reused across reads.
 */
export interface BlkifRequest {
  operation: number;
  /** u8 for direct requests, u16 for BLKIF_OP_INDIRECT; may exceed the arrays (the caller validates) */
  nrSegments: number;
  handle: number;
  idLo: number;
  idHi: number;
  /** lossless below 2^53; larger values lose low bits but stay huge, so a range check still rejects them */
  sectorNumber: number;
  /** direct segments; entries [0, min(nrSegments, 11)) are valid after a read */
  readonly segGref: Uint32Array;
  readonly segFirstSect: Uint8Array;
  readonly segLastSect: Uint8Array;
  /** BLKIF_OP_DISCARD */
  discardFlag: number;
  nrSectors: number;
  /** BLKIF_OP_INDIRECT */
  indirectOp: number;
  readonly indirectGrefs: Uint32Array;
}

export function newBlkifRequest(): BlkifRequest {
  return {
    operation: 0,
    nrSegments: 0,
    handle: 0,
    idLo: 0,
    idHi: 0,
    sectorNumber: 0,
    segGref: new Uint32Array(BLKIF_MAX_SEGMENTS_PER_REQUEST),
    segFirstSect: new Uint8Array(BLKIF_MAX_SEGMENTS_PER_REQUEST),
    segLastSect: new Uint8Array(BLKIF_MAX_SEGMENTS_PER_REQUEST),
    discardFlag: 0,
    nrSectors: 0,
    indirectOp: 0,
    indirectGrefs: new Uint32Array(BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST),
  };
}

export interface BlkifResponse {
  idLo: number;
  idHi: number;
  operation: number;
  status: number;
}

export function newBlkifResponse(): BlkifResponse {
  return { idLo: 0, idHi: 0, operation: 0, status: 0 };
}

/** a u64 as a JS number (exact below 2^53) */
export function u64(lo: number, hi: number): number {
  return hi * TWO32 + lo;
}

function getU64(view: DataView, off: number): number {
  return view.getUint32(off + 4, true) * TWO32 + view.getUint32(off, true);
}

function setU64(view: DataView, off: number, v: number): void {
  view.setUint32(off, v >>> 0, true);
  // the division only for values that need it: ids and sectors are mostly below 2^32
  view.setUint32(off + 4, v <= 0xffffffff ? 0 : Math.floor(v / TWO32) >>> 0, true);
}

export const blkifRequest = {
  /** decode the request at `off` per its operation's layout */
  read(view: DataView, off: number, into: BlkifRequest): BlkifRequest {
    const op = view.getUint8(off);
    into.operation = op;
    into.idLo = view.getUint32(off + BLKIF_REQ_ID, true);
    into.idHi = view.getUint32(off + BLKIF_REQ_ID + 4, true);
    into.sectorNumber = getU64(view, off + BLKIF_REQ_SECTOR_NUMBER);
    if (op === BLKIF_OP_INDIRECT) {
      into.indirectOp = view.getUint8(off + BLKIF_INDIRECT_OP);
      into.nrSegments = view.getUint16(off + BLKIF_INDIRECT_NR_SEGMENTS, true);
      into.handle = view.getUint16(off + BLKIF_INDIRECT_HANDLE, true);
      const g = into.indirectGrefs;
      for (let i = 0; i < BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST; i++) {
        g[i] = view.getUint32(off + BLKIF_INDIRECT_GREFS + 4 * i, true);
      }
      return into;
    }
    into.handle = view.getUint16(off + BLKIF_REQ_HANDLE, true);
    if (op === BLKIF_OP_DISCARD) {
      into.discardFlag = view.getUint8(off + BLKIF_DISCARD_FLAG);
      into.nrSegments = 0;
      into.nrSectors = getU64(view, off + BLKIF_DISCARD_NR_SECTORS);
      return into;
    }
    const n = view.getUint8(off + BLKIF_REQ_NR_SEGMENTS);
    into.nrSegments = n;
    const m = n < BLKIF_MAX_SEGMENTS_PER_REQUEST ? n : BLKIF_MAX_SEGMENTS_PER_REQUEST;
    let s = off + BLKIF_REQ_SEG;
    for (let i = 0; i < m; i++, s += BLKIF_SEGMENT_SIZE) {
      into.segGref[i] = view.getUint32(s, true);
      into.segFirstSect[i] = view.getUint8(s + BLKIF_SEG_FIRST_SECT);
      into.segLastSect[i] = view.getUint8(s + BLKIF_SEG_LAST_SECT);
    }
    return into;
  },

  /** encode `req` per its operation's layout (segments/grefs beyond the count are not written) */
  write(view: DataView, off: number, req: BlkifRequest): void {
    const op = req.operation;
    view.setUint8(off, op);
    view.setUint32(off + BLKIF_REQ_ID, req.idLo >>> 0, true);
    view.setUint32(off + BLKIF_REQ_ID + 4, req.idHi >>> 0, true);
    setU64(view, off + BLKIF_REQ_SECTOR_NUMBER, req.sectorNumber);
    if (op === BLKIF_OP_INDIRECT) {
      view.setUint8(off + BLKIF_INDIRECT_OP, req.indirectOp);
      view.setUint16(off + BLKIF_INDIRECT_NR_SEGMENTS, req.nrSegments, true);
      view.setUint16(off + BLKIF_INDIRECT_HANDLE, req.handle, true);
      for (let i = 0; i < BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST; i++) {
        view.setUint32(off + BLKIF_INDIRECT_GREFS + 4 * i, req.indirectGrefs[i], true);
      }
      return;
    }
    view.setUint16(off + BLKIF_REQ_HANDLE, req.handle, true);
    if (op === BLKIF_OP_DISCARD) {
      view.setUint8(off + BLKIF_DISCARD_FLAG, req.discardFlag);
      setU64(view, off + BLKIF_DISCARD_NR_SECTORS, req.nrSectors);
      return;
    }
    const n = req.nrSegments;
    view.setUint8(off + BLKIF_REQ_NR_SEGMENTS, n);
    const m = n < BLKIF_MAX_SEGMENTS_PER_REQUEST ? n : BLKIF_MAX_SEGMENTS_PER_REQUEST;
    for (let i = 0; i < m; i++) {
      writeBlkifSegment(view, off, i, req.segGref[i], req.segFirstSect[i], req.segLastSect[i]);
    }
  },
};

/** header of a READ / WRITE / WRITE_BARRIER / FLUSH_DISKCACHE request; add segments with writeBlkifSegment */
export function writeBlkifRw(
  view: DataView,
  off: number,
  operation: number,
  nrSegments: number,
  handle: number,
  id: number,
  sectorNumber: number,
): void {
  // one u32 store for op, nr_segments and handle, and zero for the 4 pad bytes before id
  view.setUint32(off, (operation & 0xff) | ((nrSegments & 0xff) << 8) | ((handle & 0xffff) << 16), true);
  view.setUint32(off + 4, 0, true);
  setU64(view, off + BLKIF_REQ_ID, id);
  setU64(view, off + BLKIF_REQ_SECTOR_NUMBER, sectorNumber);
}

/** segment `i` of the direct request at `reqOff` */
export function writeBlkifSegment(view: DataView, reqOff: number, i: number, gref: number, firstSect: number, lastSect: number): void {
  const s = reqOff + BLKIF_REQ_SEG + i * BLKIF_SEGMENT_SIZE;
  view.setUint32(s, gref >>> 0, true);
  view.setUint32(s + 4, (firstSect & 0xff) | ((lastSect & 0xff) << 8), true);
}

export function writeBlkifDiscard(
  view: DataView,
  off: number,
  flag: number,
  handle: number,
  id: number,
  sectorNumber: number,
  nrSectors: number,
): void {
  view.setUint32(off, BLKIF_OP_DISCARD | ((flag & 0xff) << 8) | ((handle & 0xffff) << 16), true);
  view.setUint32(off + 4, 0, true);
  setU64(view, off + BLKIF_REQ_ID, id);
  setU64(view, off + BLKIF_REQ_SECTOR_NUMBER, sectorNumber);
  setU64(view, off + BLKIF_DISCARD_NR_SECTORS, nrSectors);
}

/** header of an indirect request; add the indirect page grefs with writeBlkifIndirectGref */
export function writeBlkifIndirect(
  view: DataView,
  off: number,
  indirectOp: number,
  nrSegments: number,
  handle: number,
  id: number,
  sectorNumber: number,
): void {
  view.setUint32(off, BLKIF_OP_INDIRECT | ((indirectOp & 0xff) << 8) | ((nrSegments & 0xffff) << 16), true);
  view.setUint32(off + 4, 0, true);
  setU64(view, off + BLKIF_REQ_ID, id);
  setU64(view, off + BLKIF_REQ_SECTOR_NUMBER, sectorNumber);
  view.setUint32(off + BLKIF_INDIRECT_HANDLE, handle & 0xffff, true);
}

export function writeBlkifIndirectGref(view: DataView, reqOff: number, i: number, gref: number): void {
  view.setUint32(reqOff + BLKIF_INDIRECT_GREFS + 4 * i, gref >>> 0, true);
}

/**
 * Read `count` segments starting at `off` (an indirect page, or BLKIF_REQ_SEG of a request) into
 * parallel arrays at `start`.
 */
export function readBlkifSegments(
  view: DataView,
  off: number,
  count: number,
  gref: Uint32Array,
  firstSect: Uint8Array,
  lastSect: Uint8Array,
  start = 0,
): void {
  for (let i = 0; i < count; i++, off += BLKIF_SEGMENT_SIZE) {
    gref[start + i] = view.getUint32(off, true);
    firstSect[start + i] = view.getUint8(off + BLKIF_SEG_FIRST_SECT);
    lastSect[start + i] = view.getUint8(off + BLKIF_SEG_LAST_SECT);
  }
}

/** a segment's sectors are [first, last] within one page */
export function blkifSegmentValid(firstSect: number, lastSect: number): boolean {
  return lastSect < BLKIF_SECTORS_PER_PAGE && lastSect >= firstSect;
}

/**
 * Write all 16 bytes of a response, padding included (XSA-216: blkback once leaked the
 * uninitialised padding of its responses to the frontend).
 */
export function writeBlkifResponse(view: DataView, off: number, idLo: number, idHi: number, operation: number, status: number): void {
  view.setUint32(off + BLKIF_RSP_ID, idLo >>> 0, true);
  view.setUint32(off + BLKIF_RSP_ID + 4, idHi >>> 0, true);
  view.setUint32(off + BLKIF_RSP_OPERATION, (operation & 0xff) | ((status & 0xffff) << 16), true);
  view.setUint32(off + 12, 0, true);
}

export const blkifResponse = {
  read(view: DataView, off: number, into: BlkifResponse): BlkifResponse {
    into.idLo = view.getUint32(off + BLKIF_RSP_ID, true);
    into.idHi = view.getUint32(off + BLKIF_RSP_ID + 4, true);
    into.operation = view.getUint8(off + BLKIF_RSP_OPERATION);
    into.status = view.getInt16(off + BLKIF_RSP_STATUS, true);
    return into;
  },
  write(view: DataView, off: number, rsp: BlkifResponse): void {
    writeBlkifResponse(view, off, rsp.idLo, rsp.idHi, rsp.operation, rsp.status);
  },
};

export function blkifOpName(op: number): string {
  switch (op) {
    case BLKIF_OP_READ:
      return 'read';
    case BLKIF_OP_WRITE:
      return 'write';
    case BLKIF_OP_WRITE_BARRIER:
      return 'write-barrier';
    case BLKIF_OP_FLUSH_DISKCACHE:
      return 'flush-diskcache';
    case BLKIF_OP_DISCARD:
      return 'discard';
    case BLKIF_OP_INDIRECT:
      return 'indirect';
    default:
      return `op(${op})`;
  }
}

// ---- virtual disk ids (the `virtual-device` key), as libxl numbers them ----

export const XEN_VBD_MAJOR = 202;
export const SCSI_DISK0_MAJOR = 8;
export const IDE0_MAJOR = 3;
export const IDE1_MAJOR = 22;
/** extended ids: 1<<28 | disk<<8 | partition, for disks >= 16 or partitions >= 16 */
export const XEN_VBD_EXTENDED = 1 << 28;
const EXT_MAX_DISK = (1 << 20) - 1;

/** 'a'..'z' = 0..25, 'aa' = 26: bijective base 26 */
function lettersToDisk(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    n = n * 26 + (s.charCodeAt(i) - 96);
    if (n > EXT_MAX_DISK + 1) return -1;
  }
  return n - 1;
}

function diskToLetters(disk: number): string {
  let s = '';
  let n = disk + 1;
  while (n > 0) {
    n--;
    s = String.fromCharCode(97 + (n % 26)) + s;
    n = Math.floor(n / 26);
  }
  return s;
}

function xvdNumber(disk: number, part: number): number | null {
  if (disk < 16 && part < 16) return (XEN_VBD_MAJOR << 8) | (disk << 4) | part;
  if (disk <= EXT_MAX_DISK && part <= 255) return (XEN_VBD_EXTENDED | (disk << 8) | part) >>> 0;
  return null;
}

/**
 * The device number of a virtual disk name: xvdX[N], hdX[N], sdX[N], dN[pM], or a decimal number.
 * Returns null for anything else or out of range.
 */
export function vdevToNumber(name: string): number | null {
  let m = /^(xvd|hd|sd)([a-z]+)(0|[1-9][0-9]{0,2})?$/.exec(name);
  if (m) {
    const disk = lettersToDisk(m[2]);
    const part = m[3] === undefined ? 0 : Number(m[3]);
    if (disk < 0) return null;
    if (m[1] === 'xvd') return xvdNumber(disk, part);
    if (m[1] === 'hd') {
      if (disk >= 4 || part >= 64) return null;
      return ((disk < 2 ? IDE0_MAJOR : IDE1_MAJOR) << 8) | ((disk & 1) << 6) | part;
    }
    if (disk >= 16 || part >= 16) return null;
    return (SCSI_DISK0_MAJOR << 8) | (disk << 4) | part;
  }
  m = /^d(0|[1-9][0-9]{0,6})(?:p(0|[1-9][0-9]{0,2}))?$/.exec(name);
  if (m) return xvdNumber(Number(m[1]), m[2] === undefined ? 0 : Number(m[2]));
  if (/^(0|[1-9][0-9]{0,9})$/.test(name)) {
    const n = Number(name);
    return n <= 0xffffffff && numberToVdev(n) !== null ? n : null;
  }
  return null;
}

/** The name of a device number (xvd for Xen and extended ids, else sd / hd); null if it names nothing. */
export function numberToVdev(n: number): string | null {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) return null;
  if (n >= XEN_VBD_EXTENDED) {
    if (n >= XEN_VBD_EXTENDED * 2) return null;
    const disk = (n >>> 8) & EXT_MAX_DISK;
    const part = n & 0xff;
    return `xvd${diskToLetters(disk)}${part ? part : ''}`;
  }
  const major = n >>> 8;
  const minor = n & 0xff;
  if (n > 0xffff) return null;
  if (major === XEN_VBD_MAJOR || major === SCSI_DISK0_MAJOR) {
    const part = minor & 15;
    return `${major === XEN_VBD_MAJOR ? 'xvd' : 'sd'}${diskToLetters(minor >> 4)}${part ? part : ''}`;
  }
  if (major === IDE0_MAJOR || major === IDE1_MAJOR) {
    const disk = (major === IDE0_MAJOR ? 0 : 2) + (minor >> 6);
    const part = minor & 63;
    return `hd${diskToLetters(disk)}${part ? part : ''}`;
  }
  return null;
}

// ---- word accessors: the ring data path over an Int32Array of the sring ----
//
// The same layouts as the DataView accessors above, through aligned 32-bit loads and stores on an
// Int32Array (every blkif field sits inside one naturally aligned word of its 112-byte slot, and
// slots start at 64 + 112 * i, a multiple of 16). Typed-array element accesses are cheaper than
// DataView calls in V8, and a word read moves up to four fields at once. `wo` is a word offset
// (byte offset >> 2). These assume a little-endian host, like the ABI itself: check
// BLKIF_WORDS_OK (and use the DataView accessors otherwise).

/** true on a little-endian host, where the Int32Array accessors below read the ABI's byte order */
export const BLKIF_WORDS_OK = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/**
 * blkifRequest.read over words: decodes the request at word `wo` into `into`, per its operation's
 * layout, fetching every word of the slot at most once (so a frontend rewriting the slot meanwhile
 * cannot make two reads of one field disagree: XSA-155). Only the words the layout uses are read
 * (a 1-segment direct request is 8 of the 28).
 */
export function readBlkifRequestWords(w: Int32Array, wo: number, into: BlkifRequest): BlkifRequest {
  const w0 = w[wo];
  const op = w0 & 0xff;
  into.operation = op;
  into.idLo = w[wo + 2] >>> 0;
  into.idHi = w[wo + 3] >>> 0;
  into.sectorNumber = (w[wo + 5] >>> 0) * TWO32 + (w[wo + 4] >>> 0);
  if (op === BLKIF_OP_INDIRECT) {
    into.indirectOp = (w0 >>> 8) & 0xff;
    into.nrSegments = w0 >>> 16;
    // handle is the u16 at byte 24; grefs start at byte 28 (word 7)
    into.handle = w[wo + 6] & 0xffff;
    const g = into.indirectGrefs;
    for (let i = 0; i < BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST; i++) g[i] = w[wo + 7 + i];
    return into;
  }
  into.handle = w0 >>> 16;
  if (op === BLKIF_OP_DISCARD) {
    into.discardFlag = (w0 >>> 8) & 0xff;
    into.nrSegments = 0;
    into.nrSectors = (w[wo + 7] >>> 0) * TWO32 + (w[wo + 6] >>> 0);
    return into;
  }
  const n = (w0 >>> 8) & 0xff;
  into.nrSegments = n;
  const m = n < BLKIF_MAX_SEGMENTS_PER_REQUEST ? n : BLKIF_MAX_SEGMENTS_PER_REQUEST;
  const gref = into.segGref;
  const first = into.segFirstSect;
  const last = into.segLastSect;
  for (let i = 0, s = wo + 6; i < m; i++, s += 2) {
    gref[i] = w[s];
    const b = w[s + 1];
    first[i] = b;
    last[i] = b >>> 8;
  }
  return into;
}

/** writeBlkifRw over words (all 24 header bytes, the 4 pad bytes included) */
export function writeBlkifRwWords(
  w: Int32Array,
  wo: number,
  operation: number,
  nrSegments: number,
  handle: number,
  id: number,
  sectorNumber: number,
): void {
  w[wo] = (operation & 0xff) | ((nrSegments & 0xff) << 8) | ((handle & 0xffff) << 16);
  w[wo + 1] = 0;
  w[wo + 2] = id;
  w[wo + 3] = id <= 0xffffffff ? 0 : Math.floor(id / TWO32);
  w[wo + 4] = sectorNumber;
  w[wo + 5] = sectorNumber <= 0xffffffff ? 0 : Math.floor(sectorNumber / TWO32);
}

/** writeBlkifSegment over words: segment `i` of the direct request at word `wo` (8 bytes, pad included) */
export function writeBlkifSegmentWords(w: Int32Array, wo: number, i: number, gref: number, firstSect: number, lastSect: number): void {
  const s = wo + 6 + 2 * i;
  w[s] = gref;
  w[s + 1] = (firstSect & 0xff) | ((lastSect & 0xff) << 8);
}

/** word 2 of a response: operation (u8), pad (u8), status (s16) */
export function blkifResponseWord2(operation: number, status: number): number {
  return (operation & 0xff) | ((status & 0xffff) << 16);
}

/** blkifResponse.read over words (3 loads; every field fetched once) */
export function readBlkifResponseWords(w: Int32Array, wo: number, into: BlkifResponse): BlkifResponse {
  into.idLo = w[wo] >>> 0;
  into.idHi = w[wo + 1] >>> 0;
  const w2 = w[wo + 2];
  into.operation = w2 & 0xff;
  into.status = w2 >> 16;
  return into;
}
