import { describe, expect, it } from 'vitest';
import {
  canonicalPath,
  decodeHeader,
  encodeMessage,
  FrameDecoder,
  isSameOrBelow,
  parentPath,
  relativeTo,
  splitStrings,
  XsType,
  XS_ERROR_NAMES,
  HEADER_SIZE,
  PAYLOAD_MAX,
} from './wire.js';

describe('xs_wire header', () => {
  it('encodes the 16-byte little-endian header of xs_wire.h', () => {
    const b = encodeMessage(XsType.WRITE, 0x01020304, 7, 'a\0b');
    expect(b.length).toBe(HEADER_SIZE + 3);
    expect([...b.subarray(0, 16)]).toEqual([11, 0, 0, 0, 4, 3, 2, 1, 7, 0, 0, 0, 3, 0, 0, 0]);
    expect(decodeHeader(b)).toEqual({ type: 11, reqId: 0x01020304, txId: 7, len: 3 });
  });

  it('keeps the numbering and error list of Xen 4.17', () => {
    expect([XsType.DIRECTORY, XsType.WATCH_EVENT, XsType.ERROR, XsType.SET_TARGET, XsType.RESET_WATCHES, XsType.DIRECTORY_PART])
      .toEqual([1, 15, 16, 19, 21, 22]);
    expect(XS_ERROR_NAMES[0]).toBe('EINVAL');
    expect(XS_ERROR_NAMES.at(-1)).toBe('EPERM');
    expect(XS_ERROR_NAMES).toHaveLength(16);
  });
});

describe('FrameDecoder', () => {
  it('reassembles a header and payload written separately, byte by byte', () => {
    const d = new FrameDecoder();
    const frame = encodeMessage(XsType.READ, 9, 0, '/a/b\0');
    for (let i = 0; i < frame.length - 1; i++) {
      d.push(frame.subarray(i, i + 1));
      expect(d.next()).toBeUndefined();
    }
    d.push(frame.subarray(frame.length - 1));
    const f = d.next();
    expect(f?.kind).toBe('message');
    if (f?.kind === 'message') expect(f.message.payload.toString()).toBe('/a/b\0');
  });

  it('splits several frames delivered in one chunk', () => {
    const d = new FrameDecoder();
    d.push(Buffer.concat([encodeMessage(1, 1, 0, 'x\0'), encodeMessage(2, 2, 0, ''), encodeMessage(3, 3, 0, 'y\0')]));
    const ids: number[] = [];
    for (let f = d.next(); f; f = d.next()) if (f.kind === 'message') ids.push(f.message.reqId);
    expect(ids).toEqual([1, 2, 3]);
  });

  it('flags a length above PAYLOAD_MAX and stops decoding', () => {
    const d = new FrameDecoder();
    const h = Buffer.alloc(16);
    h.writeUInt32LE(PAYLOAD_MAX + 1, 12);
    d.push(h);
    expect(d.next()).toMatchObject({ kind: 'oversized', header: { len: PAYLOAD_MAX + 1 } });
    d.push(encodeMessage(1, 1, 0, 'x\0'));
    expect(d.next()).toBeUndefined();
  });

  it('accepts exactly PAYLOAD_MAX', () => {
    const d = new FrameDecoder();
    d.push(encodeMessage(11, 0, 0, Buffer.alloc(PAYLOAD_MAX)));
    expect(d.next()?.kind).toBe('message');
  });
});

describe('strings and paths', () => {
  it('splits NUL-terminated strings and reports an unterminated tail', () => {
    expect(splitStrings(Buffer.from('a\0bc\0'))).toEqual({ strings: ['a', 'bc'], rest: Buffer.alloc(0) });
    const r = splitStrings(Buffer.from('a\0tail'));
    expect(r.strings).toEqual(['a']);
    expect(r.rest.toString()).toBe('tail');
  });

  it('resolves relative paths against the domain home', () => {
    expect(canonicalPath('device/vbd', 5, false)).toEqual({ abs: '/local/domain/5/device/vbd', relative: true });
    expect(canonicalPath('/', 5, false)).toEqual({ abs: '/', relative: false });
    expect(relativeTo('/local/domain/5/device/vbd', 5)).toBe('device/vbd');
  });

  it('rejects what Xen rejects', () => {
    for (const bad of ['', '/a/', '/a//b', '/a b', '/a.b', '/ä', 'x\u0000', '@introduceDomain/x']) {
      expect(canonicalPath(bad, 0, true), JSON.stringify(bad)).toBeNull();
    }
    expect(canonicalPath('@releaseDomain', 0, false)).toBeNull();
    expect(canonicalPath('@releaseDomain', 0, true)).toEqual({ abs: '@releaseDomain', relative: false });
    expect(canonicalPath(`/${'a'.repeat(3071)}`, 0, false)).not.toBeNull();
    expect(canonicalPath(`/${'a'.repeat(3072)}`, 0, false)).toBeNull();
    expect(canonicalPath('a'.repeat(2048), 3, false)).not.toBeNull();
    expect(canonicalPath('a'.repeat(2049), 3, false)).toBeNull();
    expect(canonicalPath(`/local/domain/3/${'a'.repeat(2049)}`, 0, false)).toBeNull();
  });

  it('knows parents and subtrees', () => {
    expect(parentPath('/a/b')).toBe('/a');
    expect(parentPath('/a')).toBe('/');
    expect(parentPath('/')).toBeUndefined();
    expect(isSameOrBelow('/a/b', '/a')).toBe(true);
    expect(isSameOrBelow('/ab', '/a')).toBe(false);
    expect(isSameOrBelow('/x', '/')).toBe(true);
    expect(isSameOrBelow('@releaseDomain', '/')).toBe(false);
  });
});
