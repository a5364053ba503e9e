// Typed access to the settings of one parsed file. Each getter either returns a value the caller
// can trust or throws a ConfigError that names file, line and key and shows a correct example.

import { ConfigError, didYouMean, quote, unknownHint, type ErrorWhere } from './errors.js';
import type { CfgEntry, CfgScalar, CfgValue, XlCfg } from './xlcfg.js';

/** One element of a list setting, with where it was written. */
export interface ListItem {
  value: string;
  where: ErrorWhere;
}

export interface IntOptions {
  min: number;
  max: number;
  /** Noun phrase for messages: "a number of MiB". */
  what: string;
  example: string | number;
}

export class CfgReader {
  constructor(readonly cfg: XlCfg) {}

  get file(): string {
    return this.cfg.file;
  }

  has(key: string): boolean {
    return this.cfg.entries.has(key);
  }

  entry(key: string): CfgEntry | undefined {
    return this.cfg.entries.get(key);
  }

  /** Where a key (or the file, if the key is absent) is, for messages about it. */
  where(key: string): ErrorWhere {
    const e = this.cfg.entries.get(key);
    return { file: this.cfg.file, line: e?.line ?? 1, column: e?.column, key };
  }

  fail(key: string, problem: string, hint?: string): never {
    throw new ConfigError(this.where(key), problem, hint);
  }

  /** Typo check: every key must be one the caller knows. */
  rejectUnknown(known: readonly string[], what: string): void {
    for (const e of this.cfg.entries.values()) {
      if (!known.includes(e.key)) {
        throw new ConfigError({ file: this.cfg.file, line: e.line, column: e.column, key: e.key }, `unknown setting in ${what}`, unknownHint(e.key, known));
      }
    }
  }

  string(key: string, example: string): string | undefined {
    const e = this.entry(key);
    if (!e) return undefined;
    if (e.value.kind !== 'string') this.fail(key, `expected a quoted string, got ${describeValue(e.value)}`, `write e.g. ${key} = "${example}"`);
    return (e.value as { value: string }).value;
  }

  /** Numbers may be written bare or quoted ("256"), as xl accepts both. */
  int(key: string, o: IntOptions): number | undefined {
    const e = this.entry(key);
    if (!e) return undefined;
    const bad = (): never => this.fail(key, `expected ${o.what}, got ${describeValue(e.value)}`, `write e.g. ${key} = ${o.example}`);
    let n: bigint;
    if (e.value.kind === 'number') n = e.value.value;
    else if (e.value.kind === 'string' && /^(0|[1-9][0-9]{0,19}|0x[0-9a-fA-F]{1,16})$/.test(e.value.value.trim())) n = BigInt(e.value.value.trim());
    else return bad();
    if (n < BigInt(o.min) || n > BigInt(o.max)) {
      this.fail(key, `${n} is out of range: expected ${o.what} from ${o.min} to ${o.max}`, `write e.g. ${key} = ${o.example}`);
    }
    return Number(n);
  }

  /** xl booleans: 0 or 1. */
  flag(key: string): boolean | undefined {
    const e = this.entry(key);
    if (!e) return undefined;
    const v = e.value;
    if (v.kind === 'number' && (v.value === 0n || v.value === 1n)) return v.value === 1n;
    if (v.kind === 'string' && (v.value === '0' || v.value === '1')) return v.value === '1';
    return this.fail(key, `expected 0 or 1, got ${describeValue(v)}`, `write ${key} = 1 (on) or ${key} = 0 (off)`);
  }

  oneOf<T extends string>(key: string, allowed: readonly T[]): T | undefined {
    const s = this.string(key, allowed[0]);
    if (s === undefined) return undefined;
    if (!(allowed as readonly string[]).includes(s)) {
      const guess = didYouMean(s, allowed);
      this.fail(key, `${quote(s)} is not one of ${allowed.map((a) => `"${a}"`).join(', ')}`, guess ? `did you mean "${guess}"?` : `write e.g. ${key} = "${allowed[0]}"`);
    }
    return s as T;
  }

  /** A list of spec strings, each with its own line (lists may span lines). */
  stringList(key: string, example: string, maxItems: number): ListItem[] {
    const e = this.entry(key);
    if (!e) return [];
    if (e.value.kind !== 'list') this.fail(key, `expected a list, got ${describeValue(e.value)}`, `write ${key} = [ '${example}' ]`);
    const items = (e.value as { items: CfgScalar[] }).items;
    if (items.length > maxItems) {
      this.fail(key, `${items.length} entries; at most ${maxItems} are supported`, 'split the devices over more domains');
    }
    return items.map((it, index) => {
      const where: ErrorWhere = { file: this.cfg.file, line: it.line, column: it.column, key, index };
      if (it.kind !== 'string') throw new ConfigError(where, `expected a quoted string, got ${it.raw}`, `write '${example}'`);
      return { value: it.value, where };
    });
  }
}

export function describeValue(v: CfgValue): string {
  if (v.kind === 'string') return quote(v.value);
  if (v.kind === 'number') return v.raw;
  return `a list of ${v.items.length}`;
}
