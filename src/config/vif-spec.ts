// One `vif = [...]` entry in xl-network-configuration(5) style, extended with what a ringside guest
// needs to put its TAP somewhere useful, e.g.
//   'backend=netdom, mac=00:16:3e:00:00:01, ip=10.137.0.1/24, netns=rs-guest1, rate=10Mb/s'

import { unknownHint, type ErrorWhere } from './errors.js';
import { parseNetnsName, deriveMac, parseIpv4Cidr, parseRate, type Ipv4Cidr, type Rate } from './net.js';
import { parseMac } from '../packet/mac.js';
import { SeenOptions, checkIfName, specFail, splitSpec } from './spec.js';

export interface VifSpec {
  /** Net driver domain serving the vif (its `name`). */
  backend: string;
  /** Index in the vif list: the device id under device/vif/ (as in xl). */
  devid: number;
  mac: string;
  /** True when mac= was left out and the address was derived from the domain name and index. */
  macDerived: boolean;
  ip: Ipv4Cidr | undefined;
  /** Network namespace the guest's TAP lives in. */
  netns: string | undefined;
  rate: Rate | undefined;
  /** Switch/bridge name in the backend; informational for xl compatibility. */
  bridge: string | undefined;
  mtu: number;
  /** Queues requested from netback (multi-queue-num-queues). */
  queues: number;
  where: ErrorWhere;
}

const KEYS = ['backend', 'mac', 'ip', 'netns', 'rate', 'bridge', 'mtu', 'queues'] as const;
const MAX_QUEUES = 8; // Linux netback's max_queues default
const MIN_MTU = 68; // smallest MTU IPv4 allows (RFC 791)
const MAX_MTU = 65535;

/**
 * The namespace a vif's TAP lives in: netns= as written, else the guest's own, named after it.
 * One per guest by default because a confined guest process lives in exactly one.
 */
export function vifNetns(domainName: string, vif: Pick<VifSpec, 'netns'>): string {
  return vif.netns ?? `rs-${domainName}`;
}

export function parseVif(text: string, where: ErrorWhere, domainName: string): VifSpec {
  const fail = (problem: string, hint?: string): never => specFail(where, problem, hint);
  const index = where.index ?? 0;
  const seen = new SeenOptions(where);
  const opts = new Map<string, string>();
  for (const item of splitSpec(text, where)) {
    if (item.key === undefined) {
      if (item.value === '') continue; // xl accepts '' and stray commas
      fail(`${JSON.stringify(item.value.slice(0, 40))} is not key=value`, "vif entries are key=value pairs, e.g. 'backend=netdom, mac=00:16:3e:00:00:01'");
    }
    const key = item.key as string;
    if (!(KEYS as readonly string[]).includes(key)) fail(`unknown vif option '${key}'`, unknownHint(key, KEYS));
    seen.add(key);
    opts.set(key, item.value);
  }

  const backend = opts.get('backend');
  if (!backend) fail('missing backend=', 'add backend=<net driver domain name>, e.g. backend=netdom');

  const unwrap = <T>(r: T | { error: string }): T => {
    if (typeof r === 'object' && r !== null && 'error' in r) return fail(r.error);
    return r as T;
  };
  const macText = opts.get('mac');
  const mac = macText === undefined ? deriveMac(domainName, index) : unwrap(parseMac(macText));
  const ipText = opts.get('ip');
  const ip = ipText === undefined ? undefined : unwrap(parseIpv4Cidr(ipText));
  const nsText = opts.get('netns');
  const netns = nsText === undefined ? undefined : unwrap(parseNetnsName(nsText));
  const rateText = opts.get('rate');
  const rate = rateText === undefined ? undefined : unwrap(parseRate(rateText));
  const bridgeText = opts.get('bridge');
  const bridge = bridgeText === undefined ? undefined : checkIfName(where, 'bridge', bridgeText);

  const int = (key: string, min: number, max: number, dflt: number): number => {
    const t = opts.get(key);
    if (t === undefined) return dflt;
    if (!/^[1-9][0-9]{0,5}$/.test(t) || Number(t) < min || Number(t) > max) {
      fail(`${key}=${JSON.stringify(t.slice(0, 20))}: expected a number from ${min} to ${max}`, `write e.g. ${key}=${dflt}`);
    }
    return Number(t);
  };

  return {
    backend: backend as string,
    devid: index,
    mac,
    macDerived: macText === undefined,
    ip,
    netns,
    rate,
    bridge,
    mtu: int('mtu', MIN_MTU, MAX_MTU, 1500),
    queues: int('queues', 1, MAX_QUEUES, 1),
    where,
  };
}
