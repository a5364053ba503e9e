// ICMP echo in raw Ethernet frames, for tests that play a guest's NIC themselves (a vhost-user
// frontend on netdom): the frame a guest's stack would send, and the check of the reply the
// peer's kernel sends back. Only what those tests need: IPv4, no options, no fragments.
import { parseMacBytes } from '../../src/packet/mac.js';

export interface EchoEnds {
  srcMac: string;
  dstMac: string;
  srcIp: string;
  dstIp: string;
}

const ip4 = (s: string): number[] => {
  const p = s.split('.').map(Number);
  if (p.length !== 4 || p.some((x) => !Number.isInteger(x) || x < 0 || x > 255)) throw new Error(`not an IPv4 address: ${s}`);
  return p;
};

/** The Internet checksum (RFC 1071) of b[from..to). */
function inetSum(b: Uint8Array, from: number, to: number): number {
  let s = 0;
  for (let i = from; i < to; i += 2) s += (b[i] << 8) | (i + 1 < to ? b[i + 1] : 0);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
}

const ETH = 14;
const IP = 20;
const ICMP = 8;

/** An Ethernet frame holding an ICMP echo request with `payload` bytes of pattern. */
export function echoRequest(e: EchoEnds, id: number, seq: number, payload = 56): Uint8Array {
  const f = new Uint8Array(ETH + IP + ICMP + payload);
  f.set(parseMacBytes(e.dstMac), 0);
  f.set(parseMacBytes(e.srcMac), 6);
  f[12] = 0x08;
  f[13] = 0x00;
  const ipLen = IP + ICMP + payload;
  f.set([0x45, 0, ipLen >> 8, ipLen & 0xff, 0, 0, 0x40, 0, 64, 1, 0, 0, ...ip4(e.srcIp), ...ip4(e.dstIp)], ETH);
  const ipSum = inetSum(f, ETH, ETH + IP);
  f[ETH + 10] = ipSum >> 8;
  f[ETH + 11] = ipSum & 0xff;
  const o = ETH + IP;
  f.set([8, 0, 0, 0, id >> 8, id & 0xff, seq >> 8, seq & 0xff], o);
  for (let i = 0; i < payload; i++) f[o + ICMP + i] = i & 0xff;
  const sum = inetSum(f, o, f.length);
  f[o + 2] = sum >> 8;
  f[o + 3] = sum & 0xff;
  return f;
}

/** If `f` is an echo reply from e.dstIp to the sender of `e` (its MAC and IP), its id and sequence number. */
export function echoReply(f: Uint8Array, e: EchoEnds): { id: number; seq: number } | null {
  if (f.length < ETH + IP + ICMP || f[12] !== 0x08 || f[13] !== 0x00) return null;
  const mac = parseMacBytes(e.srcMac);
  if (!mac.every((b, i) => f[i] === b)) return null;
  if (f[ETH + 9] !== 1 || ip4(e.dstIp).some((b, i) => f[ETH + 12 + i] !== b) || ip4(e.srcIp).some((b, i) => f[ETH + 16 + i] !== b)) return null;
  const o = ETH + (f[ETH] & 0x0f) * 4;
  if (f.length < o + ICMP || f[o] !== 0 || f[o + 1] !== 0) return null;
  return { id: (f[o + 4] << 8) | f[o + 5], seq: (f[o + 6] << 8) | f[o + 7] };
}

/** A namespace's ICMP counters from its /proc/net/snmp text (InEchos, OutEchoReps, ...). */
export function icmpCounters(snmp: string): Record<string, number> {
  const lines = snmp.split('\n').filter((l) => l.startsWith('Icmp: '));
  if (lines.length < 2) throw new Error('no Icmp: lines in /proc/net/snmp');
  const names = lines[0].slice(6).trim().split(/\s+/);
  const values = lines[1].slice(6).trim().split(/\s+/).map(Number);
  return Object.fromEntries(names.map((n, i) => [n, values[i]]));
}
