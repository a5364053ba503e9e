// xs_wire.h framing and path rules, shared by the xenstore client and xenstored so both sides agree on
// exactly one definition of what a valid message and a valid node name are.

export const HEADER_SIZE = 16;
export const PAYLOAD_MAX = 4096;
export const ABS_PATH_MAX = 3072;
export const REL_PATH_MAX = 2048;

export enum XsType {
  CONTROL = 0,
  DIRECTORY = 1,
  READ = 2,
  GET_PERMS = 3,
  WATCH = 4,
  UNWATCH = 5,
  TRANSACTION_START = 6,
  TRANSACTION_END = 7,
  INTRODUCE = 8,
  RELEASE = 9,
  GET_DOMAIN_PATH = 10,
  WRITE = 11,
  MKDIR = 12,
  RM = 13,
  SET_PERMS = 14,
  WATCH_EVENT = 15,
  ERROR = 16,
  IS_DOMAIN_INTRODUCED = 17,
  RESUME = 18,
  SET_TARGET = 19,
  RESET_WATCHES = 21,
  DIRECTORY_PART = 22,
}

export function xsTypeName(type: number): string {
  const name = (XsType as unknown as Record<number, string | undefined>)[type];
  return name ?? `TYPE_${type}`;
}

// Order matches xsd_errors[] in xs_wire.h; only the names travel on the wire.
export const XS_ERROR_NAMES = [
  'EINVAL',
  'EACCES',
  'EEXIST',
  'EISDIR',
  'ENOENT',
  'ENOMEM',
  'ENOSPC',
  'EIO',
  'ENOTEMPTY',
  'ENOSYS',
  'EROFS',
  'EBUSY',
  'EAGAIN',
  'EISCONN',
  'E2BIG',
  'EPERM',
] as const;
export type XsErrorName = (typeof XS_ERROR_NAMES)[number];

const ERROR_NAME_SET: ReadonlySet<string> = new Set(XS_ERROR_NAMES);
export function isXsErrorName(s: string): s is XsErrorName {
  return ERROR_NAME_SET.has(s);
}

export interface XsHeader {
  type: number;
  reqId: number;
  txId: number;
  len: number;
}

export interface XsMessage {
  type: number;
  reqId: number;
  txId: number;
  payload: Buffer;
}

export function encodeMessage(type: number, reqId: number, txId: number, payload: Buffer | string): Buffer {
  const body = typeof payload === 'string' ? Buffer.from(payload, 'latin1') : payload;
  const out = Buffer.allocUnsafe(HEADER_SIZE + body.length);
  out.writeUInt32LE(type >>> 0, 0);
  out.writeUInt32LE(reqId >>> 0, 4);
  out.writeUInt32LE(txId >>> 0, 8);
  out.writeUInt32LE(body.length >>> 0, 12);
  body.copy(out, HEADER_SIZE);
  return out;
}

export function decodeHeader(buf: Buffer, offset = 0): XsHeader {
  return {
    type: buf.readUInt32LE(offset),
    reqId: buf.readUInt32LE(offset + 4),
    txId: buf.readUInt32LE(offset + 8),
    len: buf.readUInt32LE(offset + 12),
  };
}

export type FrameResult = { kind: 'message'; message: XsMessage } | { kind: 'oversized'; header: XsHeader };

// Stream reassembly: libxenstore writes header and payload with separate write() calls and a client may
// also pack many messages into one chunk, so frames are cut purely by the length field.
export class FrameDecoder {
  // Chunks are only joined once a whole frame is present, so a peer dribbling single bytes costs
  // linear, not quadratic, copying.
  private chunks: Buffer[] = [];
  private total = 0;
  private broken = false;

  push(chunk: Buffer): void {
    if (this.broken || chunk.length === 0) return;
    this.chunks.push(chunk);
    this.total += chunk.length;
  }

  get buffered(): number {
    return this.total;
  }

  // Returns undefined when no complete frame is buffered. After 'oversized' the stream cannot be
  // resynchronised (the length field is the only framing), so the decoder stops yielding.
  next(): FrameResult | undefined {
    if (this.broken || this.total < HEADER_SIZE) return undefined;
    if (this.chunks[0].length < HEADER_SIZE) this.coalesce();
    const header = decodeHeader(this.chunks[0]);
    if (header.len > PAYLOAD_MAX) {
      this.broken = true;
      this.chunks = [];
      this.total = 0;
      return { kind: 'oversized', header };
    }
    const size = HEADER_SIZE + header.len;
    if (this.total < size) return undefined;
    if (this.chunks[0].length < size) this.coalesce();
    const head = this.chunks[0];
    // Copy so a retained payload does not pin the whole receive chunk.
    const payload = Buffer.from(head.subarray(HEADER_SIZE, size));
    if (head.length === size) this.chunks.shift();
    else this.chunks[0] = head.subarray(size);
    this.total -= size;
    return { kind: 'message', message: { type: header.type, reqId: header.reqId, txId: header.txId, payload } };
  }

  private coalesce(): void {
    this.chunks = [Buffer.concat(this.chunks, this.total)];
  }
}

// Splits a payload into NUL-terminated strings (latin1, so arbitrary bytes survive a round trip);
// `rest` holds bytes after the last NUL, i.e. an unterminated tail.
export function splitStrings(payload: Buffer): { strings: string[]; rest: Buffer } {
  const strings: string[] = [];
  let start = 0;
  for (;;) {
    const nul = payload.indexOf(0, start);
    if (nul < 0) break;
    strings.push(payload.toString('latin1', start, nul));
    start = nul + 1;
  }
  return { strings, rest: payload.subarray(start) };
}

export function joinStrings(list: readonly string[]): Buffer {
  return Buffer.from(list.map((s) => `${s}\0`).join(''), 'latin1');
}

// ---- paths -------------------------------------------------------------------------------------

const VALID_PATH_CHARS = /^[A-Za-z0-9\-/_@]*$/;
const DOMAIN_HOME = /^\/local\/domain\/(\d+)(\/|$)/;

export function domainPath(domid: number): string {
  return `/local/domain/${domid}`;
}

export function isSpecialPath(p: string): boolean {
  return p.startsWith('@');
}

export interface CanonicalPath {
  abs: string;
  relative: boolean;
}

// Resolves a client-supplied path against the domain's home and applies Xen's node-name rules.
// Returns null for anything that must be answered with EINVAL.
export function canonicalPath(raw: string, domid: number, allowSpecial: boolean): CanonicalPath | null {
  if (raw.length === 0) return null;
  if (!VALID_PATH_CHARS.test(raw)) return null;
  if (raw.startsWith('@')) {
    if (!allowSpecial || raw.length > REL_PATH_MAX || raw.includes('/')) return null;
    return { abs: raw, relative: false };
  }
  const relative = !raw.startsWith('/');
  const abs = relative ? `${domainPath(domid)}/${raw}` : raw;
  if (abs.length > ABS_PATH_MAX) return null;
  if (abs !== '/' && abs.endsWith('/')) return null;
  if (abs.includes('//')) return null;
  // The part below a domain's home is limited so that the domain can always name its own nodes
  // relatively, whoever created them.
  const home = DOMAIN_HOME.exec(abs);
  if (home && abs.length - home[0].length > REL_PATH_MAX) return null;
  return { abs, relative };
}

// Relative form of an absolute path for a watcher that registered relative to its home.
export function relativeTo(abs: string, domid: number): string {
  const prefix = `${domainPath(domid)}/`;
  return abs.startsWith(prefix) ? abs.slice(prefix.length) : abs;
}

export function parentPath(p: string): string | undefined {
  if (p === '/' || !p.startsWith('/')) return undefined;
  const i = p.lastIndexOf('/');
  return i === 0 ? '/' : p.slice(0, i);
}

export function baseName(p: string): string {
  return p.slice(p.lastIndexOf('/') + 1);
}

export function childPath(parent: string, name: string): string {
  return parent === '/' ? `/${name}` : `${parent}/${name}`;
}

// True when `p` is `ancestor` itself or lies below it.
export function isSameOrBelow(p: string, ancestor: string): boolean {
  if (p === ancestor) return true;
  if (ancestor === '/') return p.startsWith('/');
  return p.startsWith(ancestor) && p.charCodeAt(ancestor.length) === 0x2f;
}

// Strict unsigned decimal as used for domids, offsets and transaction ids on the wire.
export function parseDecimal(s: string, max: number): number | undefined {
  if (!/^[0-9]{1,10}$/.test(s)) return undefined;
  const n = Number(s);
  return n <= max ? n : undefined;
}
