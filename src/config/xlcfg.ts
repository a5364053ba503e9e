// xl.cfg(5) syntax: `key = value` settings, one per line (or `;`-separated), values are quoted
// strings, numbers (decimal or 0x hex) or lists of those that may span lines. `key += [...]`
// appends to a list, as in xl. Produces an ordered map with positions so every later check can say
// file:line.

import { dirname } from 'node:path';
import { ConfigError, quote } from './errors.js';
import { tokenize, type Token } from './lexer.js';

export interface Pos {
  line: number;
  column: number;
}
export interface CfgString extends Pos {
  kind: 'string';
  value: string;
}
export interface CfgNumber extends Pos {
  kind: 'number';
  value: bigint;
  raw: string;
}
export type CfgScalar = CfgString | CfgNumber;
export interface CfgList extends Pos {
  kind: 'list';
  items: CfgScalar[];
}
export type CfgValue = CfgScalar | CfgList;

export interface CfgEntry extends Pos {
  key: string;
  value: CfgValue;
}

export interface XlCfg {
  /** Name used in error messages (as given by the caller). */
  file: string;
  /** Directory relative paths in the file are resolved against. */
  dir: string;
  entries: Map<string, CfgEntry>;
}

/** A config is a page of settings; anything bigger is a mistake or an attack. */
export const MAX_CONFIG_BYTES = 1 << 20;

/** Turns file bytes into text, refusing oversize and non-UTF-8 input with the offending line. */
export function decodeConfig(bytes: Uint8Array, file: string): string {
  if (bytes.length > MAX_CONFIG_BYTES) {
    throw new ConfigError({ file, line: 0 }, `file is ${bytes.length} bytes, more than the ${MAX_CONFIG_BYTES}-byte limit`, 'is this really a config file?');
  }
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    const loose = new TextDecoder('utf-8').decode(bytes);
    const at = loose.indexOf('\ufffd');
    const before = loose.slice(0, Math.max(0, at));
    const line = before.split('\n').length;
    const column = at - (before.lastIndexOf('\n') + 1) + 1;
    throw new ConfigError({ file, line, column }, 'file is not valid UTF-8', 're-save it as UTF-8 (plain ASCII is fine)');
  }
}

export function parseXlCfg(source: string | Uint8Array, file: string, dir: string = dirname(file)): XlCfg {
  const text = typeof source === 'string' ? source : decodeConfig(source, file);
  if (typeof source === 'string' && text.length > MAX_CONFIG_BYTES) {
    throw new ConfigError({ file, line: 0 }, `file is longer than the ${MAX_CONFIG_BYTES}-byte limit`, 'is this really a config file?');
  }
  const toks = tokenize(text, file);
  let ahead: Token | undefined;
  const next = (): Token => {
    const t = ahead ?? (toks.next().value as Token);
    ahead = undefined;
    return t;
  };
  const peek = (): Token => (ahead ??= next());
  const entries = new Map<string, CfgEntry>();
  const fail = (t: Token, problem: string, hint?: string, key?: string): never => {
    throw new ConfigError({ file, line: t.line, column: t.column, key }, problem, hint);
  };

  let key: string | undefined; // the setting being read, so lexical errors can name it too
  try {
    for (;;) {
      key = undefined;
      const t = next();
      if (t.kind === 'eof') break;
      if (t.kind === 'eol') continue;
      if (t.kind !== 'ident') fail(t, `expected a setting name, got ${describe(t)}`, 'each line is key = value');
      const k = (t as Extract<Token, { kind: 'ident' }>).text;
      key = k;
      const op = next();
      if (op.kind !== 'punct' || (op.text !== '=' && op.text !== '+=')) {
        fail(op, `expected '=' after '${k}', got ${describe(op)}`, `write ${k} = value`, k);
      }
      const append = op.kind === 'punct' && op.text === '+=';
      const value = parseValue(k);
      const end = next();
      if (end.kind !== 'eol' && end.kind !== 'eof') {
        fail(end, `unexpected ${describe(end)} after the value`, 'one setting per line; quote values that contain spaces', k);
      }
      if (end.kind === 'eof') ahead = end;

      const prev = entries.get(k);
      if (prev && !append) {
        fail(t, `set twice (first at line ${prev.line})`, `keep one; to add to a list write ${k} += [ ... ]`, k);
      }
      if (prev && append) {
        if (prev.value.kind !== 'list' || value.kind !== 'list') {
          fail(op, `'+=' needs a list on both sides`, `write ${k} += [ "..." ] after ${k} = [ ... ]`, k);
        }
        (prev.value as CfgList).items.push(...(value as CfgList).items);
      } else {
        entries.set(k, { key: k, value, line: t.line, column: t.column });
      }
    }
  } catch (e) {
    if (e instanceof ConfigError && e.key === undefined && key !== undefined) {
      throw new ConfigError({ file: e.file, line: e.line, column: e.column, key }, e.problem, e.hint);
    }
    throw e;
  }
  return { file, dir, entries };

  function parseValue(key: string): CfgValue {
    const t = next();
    if (t.kind === 'string') return { kind: 'string', value: t.value, line: t.line, column: t.column };
    if (t.kind === 'number') return { kind: 'number', value: t.value, raw: t.raw, line: t.line, column: t.column };
    if (t.kind === 'punct' && t.text === '[') return parseList(key, t);
    if (t.kind === 'ident') {
      return fail(t, `bare word ${quote(t.text)} is not a value`, `quote strings: ${key} = "${t.text}"`, key);
    }
    return fail(t, `missing value, got ${describe(t)}`, `write ${key} = "text", a number or [ ... ]`, key);
  }

  function parseList(key: string, open: Token): CfgList {
    const items: CfgScalar[] = [];
    const skipEol = () => {
      while (peek().kind === 'eol') next();
    };
    for (;;) {
      skipEol();
      const t = next();
      if (t.kind === 'punct' && t.text === ']') break;
      if (t.kind === 'string') items.push({ kind: 'string', value: t.value, line: t.line, column: t.column });
      else if (t.kind === 'number') items.push({ kind: 'number', value: t.value, raw: t.raw, line: t.line, column: t.column });
      else if (t.kind === 'eof') fail(open, `list is not closed`, `add ']' after the last item`, key);
      else if (t.kind === 'punct' && t.text === '[') fail(t, 'nested lists are not supported', 'use a flat list of strings', key);
      else if (t.kind === 'ident') fail(t, `bare word ${quote(t.text)} in list`, `quote it: "${t.text}"`, key);
      else fail(t, `expected a list item, got ${describe(t)}`, 'items are "strings" or numbers separated by commas', key);
      skipEol();
      const sep = next();
      if (sep.kind === 'punct' && sep.text === ']') break;
      if (sep.kind === 'eof') fail(open, `list is not closed`, `add ']' after the last item`, key);
      if (sep.kind === 'ident') fail(sep, `list opened at line ${open.line} is not closed before ${describe(sep)}`, `add ']' after the last item`, key);
      if (!(sep.kind === 'punct' && sep.text === ',')) {
        fail(sep, `expected ',' or ']' in list, got ${describe(sep)}`, 'separate items with commas', key);
      }
    }
    return { kind: 'list', items, line: open.line, column: open.column };
  }
}

function describe(t: Token): string {
  switch (t.kind) {
    case 'eof':
      return 'end of file';
    case 'eol':
      return 'end of line';
    case 'ident':
      return `word ${quote(t.text)}`;
    case 'string':
      return `string ${quote(t.value)}`;
    case 'number':
      return `number ${t.raw}`;
    case 'punct':
      return `'${t.text}'`;
  }
}
