// Frames for the NIC tests: real Ethernet/IP/TCP or UDP headers, so offload checks parse them.

/** Ones'-complement sum of big-endian words (0xffff when a checksum over the range verifies). */
export function inetSum(b: Uint8Array, off: number, len: number, init = 0): number {
  let s = init;
  for (let i = 0; i + 1 < len; i += 2) s += (b[off + i] << 8) | b[off + i + 1];
  if (len & 1) s += b[off + len - 1] << 8;
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return s;
}

/** An Ethernet + IPv4/IPv6 + TCP (or UDP) frame with `payload` bytes of pattern. */
export function ipFrame(v6: boolean, payload: number, proto = 6): Uint8Array {
  const ip = v6 ? 40 : 20;
  const l4len = proto === 6 ? 20 : 8;
  const b = new Uint8Array(14 + ip + l4len + payload);
  b.set([2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1], 0);
  b[12] = v6 ? 0x86 : 0x08;
  b[13] = v6 ? 0xdd : 0x00;
  if (v6) {
    b[14] = 0x60;
    b[14 + 4] = (l4len + payload) >> 8;
    b[14 + 5] = (l4len + payload) & 0xff;
    b[14 + 6] = proto;
    b[14 + 7] = 64;
    b[14 + 8 + 15] = 1;
    b[14 + 24 + 15] = 2;
  } else {
    b[14] = 0x45;
    b[14 + 2] = (ip + l4len + payload) >> 8;
    b[14 + 3] = (ip + l4len + payload) & 0xff;
    b[14 + 8] = 64;
    b[14 + 9] = proto;
    b.set([10, 0, 0, 1, 10, 0, 0, 2], 14 + 12);
  }
  const l4 = 14 + ip;
  b.set([0x13, 0x88, 0xc0, 0x00], l4);
  if (proto === 6) b[l4 + 12] = 0x50;
  for (let i = 0; i < payload; i++) b[l4 + l4len + i] = i & 0xff;
  return b;
}

