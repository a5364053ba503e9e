// xl's PCI_SPEC_STRING (xl-pci-configuration(5)) for `pci = [...]`:
//   [DDDD:]BB:DD.F[@VSLOT][,permissive=0|1][,msitranslate=0|1][,seize=0|1][,power_mgmt=0|1]
//   [,rdm_policy=strict|relaxed][,name=NAME]
// plus the newer `bdf=...,vslot=...` key form. Function `*` means every function of the slot. Also the
// domain-wide `rdm = "strategy=host,policy=..."` string whose policy is the per-device default.

import { parseBdf, type Bdf } from './bdf.js';
import { quote, unknownHint, type ErrorWhere } from './errors.js';
import { SeenOptions, specBool, specFail, splitSpec } from './spec.js';

export type RdmPolicy = 'strict' | 'relaxed';

export interface PciDefaults {
  permissive: boolean;
  seize: boolean;
  msitranslate: boolean;
  powerMgmt: boolean;
  rdmPolicy: RdmPolicy;
}

export interface PciSpec {
  /** With allFunctions, fn is 0 and every function of bus:dev is meant. */
  bdf: Bdf;
  allFunctions: boolean;
  /** Virtual slot in the domain (`@VSLOT`), 0-0x1f. */
  vslot: number | undefined;
  permissive: boolean;
  msitranslate: boolean;
  seize: boolean;
  powerMgmt: boolean;
  rdmPolicy: RdmPolicy;
  /** Label given with name=; ringside still addresses the device by its BDF. */
  name: string | undefined;
  where: ErrorWhere;
}

const OPTIONS = ['bdf', 'vslot', 'permissive', 'msitranslate', 'seize', 'power_mgmt', 'rdm_policy', 'name'] as const;

export function parsePciSpec(text: string, where: ErrorWhere, defaults: PciDefaults): PciSpec {
  const fail = (problem: string, hint?: string): never => specFail(where, problem, hint);
  const seen = new SeenOptions(where);
  const spec: Omit<PciSpec, 'bdf' | 'allFunctions'> & { bdf?: Bdf; allFunctions: boolean } = {
    ...defaults,
    allFunctions: false,
    vslot: undefined,
    name: undefined,
    where,
  };

  splitSpec(text, where).forEach((item, i) => {
    if (item.key === undefined) {
      if (i !== 0 || item.value === '') {
        fail(`${quote(item.value)} is not an option`, 'the BDF comes first, then key=value options, e.g. "01:00.0,permissive=1"');
      }
      seen.add('bdf');
      const at = item.value.indexOf('@');
      if (at >= 0) {
        seen.add('vslot');
        spec.vslot = parseVslot(item.value.slice(at + 1), where);
      }
      Object.assign(spec, parsePciAddress(item.value.slice(0, at >= 0 ? at : undefined), where));
      return;
    }
    const key = item.key as string;
    if (!(OPTIONS as readonly string[]).includes(key)) fail(`Unknown PCI_SPEC_STRING option: ${key}`, unknownHint(key, OPTIONS));
    seen.add(key);
    const v = item.value;
    switch (key) {
      case 'bdf':
        Object.assign(spec, parsePciAddress(v, where));
        break;
      case 'vslot':
        spec.vslot = parseVslot(v.replace(/^0x/i, ''), where);
        break;
      case 'permissive':
        spec.permissive = specBool(where, key, v);
        break;
      case 'msitranslate':
        spec.msitranslate = specBool(where, key, v);
        break;
      case 'seize':
        spec.seize = specBool(where, key, v);
        break;
      case 'power_mgmt':
        spec.powerMgmt = specBool(where, key, v);
        break;
      case 'rdm_policy':
        if (v !== 'strict' && v !== 'relaxed') fail(`rdm_policy=${quote(v)}: expected strict or relaxed`, 'write rdm_policy=strict (refuse RMRR conflicts) or rdm_policy=relaxed');
        spec.rdmPolicy = v as RdmPolicy;
        break;
      case 'name':
        if (!/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}$/.test(v)) fail(`name=${quote(v)} is not a valid name`, 'use up to 63 characters from A-Z a-z 0-9 _ . -');
        spec.name = v;
        break;
    }
  });

  if (spec.bdf === undefined) {
    fail('no PCI address', spec.name ? 'ringside needs the BDF too: write "BB:DD.F,name=' + spec.name + '"' : 'write the device BDF first, e.g. "01:00.0"');
  }
  return spec as PciSpec;
}

function parsePciAddress(text: string, where: ErrorWhere): { bdf: Bdf; allFunctions: boolean } {
  const allFunctions = /\.\*$/.test(text.trim());
  const r = parseBdf(allFunctions ? text.trim().replace(/\*$/, '0') : text);
  if (typeof r === 'string') {
    return specFail(where, allFunctions ? r.replace(/\.0'/, ".*'") : r, 'function may be * for all functions of the slot');
  }
  return { bdf: r, allFunctions };
}

function parseVslot(text: string, where: ErrorWhere): number {
  if (!/^[0-9a-fA-F]{1,2}$/.test(text) || parseInt(text, 16) > 0x1f) {
    specFail(where, `virtual slot ${quote(text)} must be hex 0-1f`, 'e.g. 01:00.0@05');
  }
  return parseInt(text, 16);
}

export interface RdmConfig {
  strategy: 'host' | 'ignore';
  policy: RdmPolicy;
}

/** Domain-wide `rdm = "strategy=host,policy=strict"`. */
export function parseRdm(text: string, where: ErrorWhere): RdmConfig {
  const seen = new SeenOptions(where);
  const out: RdmConfig = { strategy: 'ignore', policy: 'strict' };
  for (const item of splitSpec(text, where)) {
    if (item.key === 'strategy') {
      seen.add('strategy');
      if (item.value !== 'host' && item.value !== 'ignore') specFail(where, `strategy=${quote(item.value)}: expected host or ignore`, 'write rdm = "strategy=host,policy=strict"');
      out.strategy = item.value as RdmConfig['strategy'];
    } else if (item.key === 'policy') {
      seen.add('policy');
      if (item.value !== 'strict' && item.value !== 'relaxed') specFail(where, `policy=${quote(item.value)}: expected strict or relaxed`, 'write rdm = "strategy=host,policy=strict"');
      out.policy = item.value as RdmPolicy;
    } else {
      specFail(where, `unknown rdm option ${quote(item.key ?? item.value)}`, 'rdm takes strategy=host|ignore and policy=strict|relaxed');
    }
  }
  return out;
}
