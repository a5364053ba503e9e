// The comma-separated `key=value, flag, positional` strings that xl uses inside lists (disk, vif,
// pci, rdm, and our host.cfg devices). Splitting is shared; meaning is each parser's job.

import { ConfigError, quote, type ErrorWhere } from './errors.js';

export interface SpecItem {
  /** Set for `key=value`; undefined for a flag or a positional value. */
  key: string | undefined;
  value: string;
}

/** Longest spec string any parser accepts: a path (PATH_MAX) plus options. */
export const MAX_SPEC_CHARS = 8192;

const KEY = /^[A-Za-z_][A-Za-z0-9_-]*$/;

export function splitSpec(text: string, where: ErrorWhere): SpecItem[] {
  if (text.length > MAX_SPEC_CHARS) {
    throw new ConfigError(where, `entry is ${text.length} characters long, more than ${MAX_SPEC_CHARS}`, 'shorten it');
  }
  return text.split(',').map((part) => {
    const s = part.trim();
    const eq = s.indexOf('=');
    if (eq > 0 && KEY.test(s.slice(0, eq).trim())) {
      return { key: s.slice(0, eq).trim(), value: s.slice(eq + 1).trim() };
    }
    return { key: undefined, value: s };
  });
}

export function specFail(where: ErrorWhere, problem: string, hint?: string): never {
  throw new ConfigError(where, problem, hint);
}

/** `name=0|1` option. */
export function specBool(where: ErrorWhere, name: string, value: string): boolean {
  if (value === '0' || value === '1') return value === '1';
  return specFail(where, `${name}=${quote(value)}: expected 0 or 1`, `write ${name}=1 or ${name}=0`);
}

/** Refuses an option given twice in one spec, where xl would silently keep one of them. */
export class SeenOptions {
  private readonly seen = new Set<string>();
  constructor(private readonly where: ErrorWhere) {}
  add(name: string): void {
    if (this.seen.has(name)) specFail(this.where, `option '${name}' is given twice`, 'keep one');
    this.seen.add(name);
  }
}

/** Linux interface names (TAPs, bridges): IFNAMSIZ-1 chars, nothing that breaks paths or ip(8). */
export function checkIfName(where: ErrorWhere, what: string, name: string): string {
  if (!/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}$/.test(name)) {
    specFail(where, `${what} ${quote(name)} is not a valid interface name`, 'use 1-15 characters from A-Z a-z 0-9 _ . - (not starting with . or -)');
  }
  return name;
}
