// Network values that appear in vif specs and host.cfg: IPv4 CIDRs, namespace names and xl's rate
// syntax (MAC addresses are src/packet/mac.ts). Each parser returns the value or a message saying
// what is wrong.

import { createHash } from 'node:crypto';
import { isIfName } from '../tap/names.js';

/** Deterministic MAC in Xen's OUI 00:16:3e for a vif with no mac=, so restarts keep the address. */
export function deriveMac(domain: string, index: number): string {
  const h = createHash('sha256').update(`${domain}/${index}`).digest();
  const hex = (b: number) => b.toString(16).padStart(2, '0');
  return `00:16:3e:${hex(h[0] & 0x7f)}:${hex(h[1])}:${hex(h[2])}`;
}

export interface Ipv4Cidr {
  address: string;
  prefix: number;
  /** `address/prefix`, as written to the guest's interface. */
  cidr: string;
  /** Network number as a u32, for subnet comparisons. */
  network: number;
}

function ipToU32(text: string): number | undefined {
  const parts = text.split('.');
  if (parts.length !== 4) return undefined;
  let n = 0;
  for (const p of parts) {
    // Leading zeros read as octal in inet_aton(3): refuse the ambiguity.
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p) || Number(p) > 255) return undefined;
    n = n * 256 + Number(p);
  }
  return n;
}

export function parseIpv4Cidr(text: string): Ipv4Cidr | { error: string } {
  const example = 'e.g. ip=10.137.0.1/24';
  const m = /^([0-9.]{7,15})\/([0-9]{1,3})$/.exec(text);
  if (!m) {
    if (ipToU32(text) !== undefined) return { error: `ip ${text} has no prefix length; write ${text}/24 (or the right prefix)` };
    if (text.includes(':')) return { error: 'IPv6 addresses are not supported; use an IPv4 address/prefix, ' + example };
    return { error: `${JSON.stringify(text.slice(0, 40))} is not an IPv4 address/prefix, ${example}` };
  }
  const addr = ipToU32(m[1]);
  const prefix = Number(m[2]);
  if (addr === undefined) return { error: `${m[1]} is not an IPv4 address (four numbers 0-255, no leading zeros), ${example}` };
  if (m[2].length > 1 && m[2][0] === '0') return { error: `prefix /${m[2]} has a leading zero` };
  if (prefix < 1 || prefix > 32) return { error: `prefix /${prefix} must be 1-32` };
  const first = addr >>> 24;
  if (addr === 0 || first === 0) return { error: `${m[1]} is in 0.0.0.0/8, which is not assignable` };
  if (first === 127) return { error: `${m[1]} is a loopback address; pick a private range such as 10.137.0.0/24` };
  if (first >= 224) return { error: `${m[1]} is a multicast or reserved address; pick a private range such as 10.137.0.0/24` };
  const mask = prefix === 32 ? 0xffffffff : ~(0xffffffff >>> prefix) >>> 0;
  const network = (addr & mask) >>> 0;
  if (prefix <= 30 && (addr === network || addr === (network | ~mask) >>> 0)) {
    return { error: `${m[1]} is the ${addr === network ? 'network' : 'broadcast'} address of /${prefix}; pick a host address inside it` };
  }
  return { address: m[1], prefix, cidr: `${m[1]}/${prefix}`, network };
}

/** Network namespace names end up in /run/netns and in derived interface names (IFNAMSIZ). */
export function parseNetnsName(text: string): string | { error: string } {
  if (isIfName(text)) return text;
  return { error: `netns ${JSON.stringify(text.slice(0, 40))} is not a valid name: use 1-15 characters from A-Z a-z 0-9 _ . - (not starting with . or -), e.g. netns=rs-guest1` };
}

export interface Rate {
  bytesPerSecond: number;
  intervalUsec: number;
  /** Credit per interval, as netback's `rate` node wants it (bytes,usec). */
  bytesPerInterval: number;
}

const RATE_MULT: Record<string, number> = { '': 1, K: 1e3, M: 1e6, G: 1e9 };
const INTERVAL_USEC: Record<string, number> = { s: 1e6, ms: 1e3, us: 1 };
export const DEFAULT_RATE_INTERVAL_USEC = 50_000; // xl's default when `@INTERVAL` is left out
const MAX_INTERVAL_USEC = 0xffffffff; // libxl keeps the interval in a u32

/** xl's `RATE/s[@INTERVAL]`: RATE with B (bytes) or b (bits), prefixes K M G (decimal). */
export function parseRate(text: string): Rate | { error: string } {
  const example = 'e.g. rate=10Mb/s or rate=1MB/s@20ms';
  const m = /^([0-9]{1,12})([KMG]?)([Bb])\/s(?:@([0-9]{1,10})(s|ms|us))?$/.exec(text);
  if (!m) return { error: `${JSON.stringify(text.slice(0, 40))} is not a rate: expected NUMBER[K|M|G](B|b)/s[@INTERVAL(s|ms|us)], ${example}` };
  const perSec = Number(m[1]) * RATE_MULT[m[2]] / (m[3] === 'b' ? 8 : 1);
  const intervalUsec = m[4] === undefined ? DEFAULT_RATE_INTERVAL_USEC : Number(m[4]) * INTERVAL_USEC[m[5] as string];
  if (perSec < 1) return { error: `rate ${text} is below 1 byte per second` };
  if (perSec > 1e12) return { error: `rate ${text} is above 1 TB/s; leave rate= out for no limit` };
  if (intervalUsec < 1 || intervalUsec > MAX_INTERVAL_USEC) return { error: `interval in ${text} must be between 1us and ${MAX_INTERVAL_USEC}us` };
  const bytesPerInterval = Math.floor((perSec * intervalUsec) / 1e6);
  if (bytesPerInterval < 1) return { error: `rate ${text} allows less than one byte per interval; use a longer @INTERVAL` };
  return { bytesPerSecond: Math.floor(perSec), intervalUsec, bytesPerInterval };
}
