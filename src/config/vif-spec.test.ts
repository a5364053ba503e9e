import { describe, expect, it } from 'vitest';
import { parseVif } from './vif-spec.js';
import { deriveMac, parseIpv4Cidr, parseRate, parseNetnsName } from './net.js';
import { parseMac } from '../packet/mac.js';
import { configError } from './testing/expect-error.js';
import type { ErrorWhere } from './errors.js';

const W: ErrorWhere = { file: 'sys/guest2.cfg', line: 4, column: 7, key: 'vif', index: 0 };
const vif = (s: string) => parseVif(s, W, 'guest2');

describe('net values', () => {
  it('MACs: unicast, not zero, normalised', () => {
    expect(parseMac('00:16:3E:AA:bb:01')).toBe('00:16:3e:aa:bb:01');
    expect(parseMac('02:00:00:00:00:01')).toBe('02:00:00:00:00:01');
    for (const bad of ['00:00:00:00:00:00', '01:00:5e:00:00:01', 'ff:ff:ff:ff:ff:ff', '00:16:3e:00:00', '00-16-3e-00-00-01', '00:16:3e:00:00:0g', '0:16:3e:0:0:1', '']) {
      expect(parseMac(bad)).toHaveProperty('error');
    }
    expect(parseMac('01:00:5e:00:00:01')).toMatchObject({ error: expect.stringMatching(/multicast/) });
  });

  it('derived MACs are stable, in Xen OUI, unicast', () => {
    expect(deriveMac('g', 0)).toBe(deriveMac('g', 0));
    expect(deriveMac('g', 0)).not.toBe(deriveMac('g', 1));
    expect(deriveMac('g', 0)).toMatch(/^00:16:3e:[0-7][0-9a-f]:[0-9a-f]{2}:[0-9a-f]{2}$/);
  });

  it('IPv4 CIDRs', () => {
    expect(parseIpv4Cidr('10.137.0.1/24')).toEqual({ address: '10.137.0.1', prefix: 24, cidr: '10.137.0.1/24', network: 0x0a890000 });
    expect(parseIpv4Cidr('192.168.1.5/32')).toMatchObject({ prefix: 32 });
    expect(parseIpv4Cidr('10.0.0.0/31')).toMatchObject({ prefix: 31 });
    const bad: [string, RegExp][] = [
      ['10.137.0.1', /no prefix length; write 10\.137\.0\.1\/24/],
      ['10.137.0.0/24', /network address/],
      ['10.137.0.255/24', /broadcast address/],
      ['10.137.0.1/33', /1-32/],
      ['10.137.0.1/0', /1-32/],
      ['10.137.0.1/024', /leading zero/],
      ['10.137.0.01/24', /not an IPv4 address/],
      ['256.1.1.1/24', /not an IPv4 address/],
      ['127.0.0.2/8', /loopback/],
      ['224.0.0.1/4', /multicast/],
      ['0.1.2.3/8', /not assignable/],
      ['fe80::1/64', /IPv6/],
      ['garbage', /not an IPv4/],
    ];
    for (const [t, re] of bad) expect(parseIpv4Cidr(t)).toMatchObject({ error: expect.stringMatching(re) });
  });

  it('rates in xl syntax', () => {
    expect(parseRate('10Mb/s')).toEqual({ bytesPerSecond: 1_250_000, intervalUsec: 50_000, bytesPerInterval: 62_500 });
    expect(parseRate('1MB/s@20ms')).toEqual({ bytesPerSecond: 1_000_000, intervalUsec: 20_000, bytesPerInterval: 20_000 });
    expect(parseRate('100KB/s@1s')).toMatchObject({ bytesPerSecond: 100_000, intervalUsec: 1_000_000 });
    expect(parseRate('8b/s@1s')).toMatchObject({ bytesPerSecond: 1, bytesPerInterval: 1 });
    expect(parseRate('1Gb/s@500us')).toMatchObject({ bytesPerSecond: 125_000_000, intervalUsec: 500 });
    for (const bad of ['10Mb', '10 Mb/s', '10Tb/s', 'Mb/s', '-1Mb/s', '10Mb/s@', '10Mb/s@5m', '1b/s', '8b/s@1us', '10Mb/s@0ms', '999999999999GB/s', '10Mb/s@9999999999s']) {
      expect(parseRate(bad), bad).toHaveProperty('error');
    }
  });

  it('netns names', () => {
    expect(parseNetnsName('rs-guest1')).toBe('rs-guest1');
    for (const bad of ['', '.', '..', '-x', 'a/b', 'a b', 'x'.repeat(16), 'ns\u0000']) expect(parseNetnsName(bad)).toHaveProperty('error');
  });
});

describe('vif spec', () => {
  it('parses the full form', () => {
    expect(vif('backend=netdom, mac=00:16:3e:00:00:02, ip=10.137.0.2/24, netns=rs-guest2, rate=10Mb/s@20ms, bridge=sw0, mtu=9000, queues=2')).toMatchObject({
      backend: 'netdom',
      devid: 0,
      mac: '00:16:3e:00:00:02',
      macDerived: false,
      ip: { address: '10.137.0.2', prefix: 24 },
      netns: 'rs-guest2',
      rate: { bytesPerSecond: 1_250_000, intervalUsec: 20_000 },
      bridge: 'sw0',
      mtu: 9000,
      queues: 2,
      where: W,
    });
  });

  it('defaults: derived MAC, MTU 1500, one queue', () => {
    const v = vif('backend=netdom');
    expect(v).toMatchObject({ mac: deriveMac('guest2', 0), macDerived: true, mtu: 1500, queues: 1, ip: undefined, netns: undefined, rate: undefined });
    expect(vif('backend=netdom,')).toMatchObject({ backend: 'netdom' });
  });

  const bad: [string, RegExp][] = [
    ['mac=00:16:3e:00:00:01', /missing backend=; add backend=/],
    ['backend=netdom, mac=01:16:3e:00:00:01', /multicast/],
    ['backend=netdom, mac=00:00:00:00:00:00', /not a usable address/],
    ['backend=netdom, ip=10.137.0.2', /no prefix length/],
    ['backend=netdom, netns=../etc', /not a valid name/],
    ['backend=netdom, netns=abcdefghijklmnop', /not a valid name/],
    ['backend=netdom, rate=fast', /not a rate/],
    ['backend=netdom, mtu=20', /mtu="20": expected a number from 68 to 65535/],
    ['backend=netdom, mtu=99999999999999', /mtu=/],
    ['backend=netdom, queues=0', /queues="0"/],
    ['backend=netdom, queues=9', /queues="9"/],
    ['backend=netdom, bridge=a/b', /bridge "a\/b" is not a valid interface name/],
    ['backend=netdom, model=e1000', /unknown vif option 'model'/],
    ['backend=netdom, maq=00:16:3e:00:00:01', /did you mean 'mac'\?/],
    ['backend=netdom, mac=00:16:3e:00:00:01, mac=00:16:3e:00:00:03', /given twice/],
    ['backend=netdom, xenbr0', /"xenbr0" is not key=value/],
  ];
  for (const [spec, re] of bad) {
    it(`refuses ${JSON.stringify(spec)}`, () => {
      const e = configError(() => vif(spec));
      expect(e.message).toMatch(/^sys\/guest2\.cfg:4: key 'vif\[0\]': /);
      expect(e.message).toMatch(re);
    });
  }
});
