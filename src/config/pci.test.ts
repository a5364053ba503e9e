import { describe, expect, it } from 'vitest';
import { parsePciSpec, parseRdm, type PciDefaults } from './pci.js';
import { configError } from './testing/expect-error.js';
import type { ErrorWhere } from './errors.js';

const W: ErrorWhere = { file: 'sys/blkdom.cfg', line: 12, column: 9, key: 'pci', index: 0 };
const D: PciDefaults = { permissive: false, seize: false, msitranslate: false, powerMgmt: false, rdmPolicy: 'strict' };
const pci = (s: string, d: PciDefaults = D) => parsePciSpec(s, W, d);

describe('PCI_SPEC_STRING', () => {
  it('parses BDF forms', () => {
    expect(pci('01:00.0')).toMatchObject({ bdf: { domain: 0, bus: 1, dev: 0, fn: 0 }, allFunctions: false, vslot: undefined, permissive: false, rdmPolicy: 'strict', where: W });
    expect(pci('0001:0a:1f.7')).toMatchObject({ bdf: { domain: 1, bus: 10, dev: 31, fn: 7 } });
    expect(pci('03:00.*')).toMatchObject({ bdf: { bus: 3, dev: 0, fn: 0 }, allFunctions: true });
    expect(pci('03:00.0@1f')).toMatchObject({ vslot: 0x1f });
    expect(pci('bdf=03:00.1,vslot=0x05')).toMatchObject({ bdf: { fn: 1 }, vslot: 5 });
  });

  it('parses options and takes domain defaults', () => {
    expect(pci('01:00.0,permissive=1,msitranslate=1,seize=1,power_mgmt=1,rdm_policy=relaxed,name=nvme0')).toMatchObject({
      permissive: true,
      msitranslate: true,
      seize: true,
      powerMgmt: true,
      rdmPolicy: 'relaxed',
      name: 'nvme0',
    });
    expect(pci('01:00.0', { ...D, permissive: true, seize: true, rdmPolicy: 'relaxed' })).toMatchObject({ permissive: true, seize: true, rdmPolicy: 'relaxed' });
    expect(pci('01:00.0,permissive=0', { ...D, permissive: true })).toMatchObject({ permissive: false });
  });

  const bad: [string, RegExp][] = [
    ['01:00.0,foo=1', /Unknown PCI_SPEC_STRING option: foo/],
    ['01:00.0,permisive=1', /Unknown PCI_SPEC_STRING option: permisive; did you mean 'permissive'\?/],
    ['01:00.0@20', /virtual slot "20" must be hex 0-1f/],
    ['01:00.0@xyz', /virtual slot/],
    ['01:00.8', /not a PCI address/],
    ['01:20.0', /above 0x1f/],
    ['100:00.0', /not a PCI address/],
    ['01:00.0,permissive=yes', /permissive="yes": expected 0 or 1/],
    ['01:00.0,rdm_policy=loose', /rdm_policy="loose": expected strict or relaxed/],
    ['01:00.0,name=a b', /not a valid name/],
    ['name=nvme0', /no PCI address; ringside needs the BDF too/],
    ['', /is not an option/],
    ['permissive=1,01:00.0', /the BDF comes first/],
    ['01:00.0,bdf=02:00.0', /option 'bdf' is given twice/],
    ['01:00.0,seize=1,seize=0', /option 'seize' is given twice/],
  ];
  for (const [spec, re] of bad) {
    it(`refuses ${JSON.stringify(spec)}`, () => {
      const e = configError(() => pci(spec));
      expect(e.message).toMatch(/^sys\/blkdom\.cfg:12: key 'pci\[0\]': /);
      expect(e.message).toMatch(re);
    });
  }
});

describe('rdm', () => {
  const R: ErrorWhere = { file: 'f.cfg', line: 3, key: 'rdm' };
  it('parses strategy and policy', () => {
    expect(parseRdm('strategy=host,policy=relaxed', R)).toEqual({ strategy: 'host', policy: 'relaxed' });
    expect(parseRdm('strategy=host', R)).toEqual({ strategy: 'host', policy: 'strict' });
  });
  it('refuses bad values', () => {
    expect(configError(() => parseRdm('strategy=all', R)).message).toMatch(/^f\.cfg:3: key 'rdm': strategy="all"/);
    expect(configError(() => parseRdm('policy=lax', R)).message).toMatch(/policy="lax"/);
    expect(configError(() => parseRdm('reserve=1', R)).message).toMatch(/unknown rdm option "reserve"/);
  });
});
