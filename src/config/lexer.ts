// Tokens of xl.cfg(5) syntax. Config files come from users and may come from anywhere, so the lexer
// refuses anything that could hide meaning (NUL, control and bidi characters, octal-looking numbers)
// rather than guessing, and every refusal says where and what to write instead.

import { ConfigError, quote } from './errors.js';

export type Token =
  | { kind: 'ident'; text: string; line: number; column: number }
  | { kind: 'string'; value: string; line: number; column: number }
  | { kind: 'number'; value: bigint; raw: string; line: number; column: number }
  | { kind: 'punct'; text: '=' | '+=' | '[' | ']' | ','; line: number; column: number }
  | { kind: 'eol'; line: number; column: number } // newline or ';'
  | { kind: 'eof'; line: number; column: number };

// Longest u64 in each base; anything longer cannot be a value any key accepts.
const MAX_DEC_DIGITS = 20;
const MAX_HEX_DIGITS = 16;

const isIdentStart = (c: string) => /[A-Za-z_]/.test(c);
const isIdentChar = (c: string) => /[A-Za-z0-9_.]/.test(c);
const isDigit = (c: string) => c >= '0' && c <= '9';
const isHex = (c: string) => /[0-9a-fA-F]/.test(c);

// Trojan-source style reordering characters: a config must read the same in an editor as it parses.
const BIDI = /[\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]/;

/** Lazily, so the parser knows which setting it was reading when the lexer refuses something. */
export function* tokenize(src: string, file: string): Generator<Token, void, undefined> {
  let i = 0;
  let line = 1;
  let lineStart = 0;
  const col = (at: number) => at - lineStart + 1;
  const fail = (at: number, problem: string, hint?: string): never => {
    throw new ConfigError({ file, line, column: col(at) }, problem, hint);
  };

  if (src.charCodeAt(0) === 0xfeff) i = 1; // UTF-8 BOM written by some editors

  while (i < src.length) {
    const c = src[i];
    if (c === '\n') {
      yield { kind: 'eol', line, column: col(i) };
      i++;
      line++;
      lineStart = i;
    } else if (c === ' ' || c === '\t' || c === '\r' || c === '\f' || c === '\v') {
      i++;
    } else if (c === '#') {
      while (i < src.length && src[i] !== '\n') {
        checkChar(src, i, fail, true);
        i++;
      }
    } else if (c === ';') {
      yield { kind: 'eol', line, column: col(i) };
      i++;
    } else if (c === '"' || c === "'") {
      const start = i;
      const { value, end } = lexString(src, i, fail);
      yield { kind: 'string', value, line, column: col(start) };
      i = end;
    } else if (isDigit(c)) {
      const start = i;
      let raw: string;
      let value: bigint;
      if (c === '0' && (src[i + 1] === 'x' || src[i + 1] === 'X')) {
        i += 2;
        while (i < src.length && isHex(src[i])) i++;
        raw = src.slice(start, i);
        if (raw.length === 2) fail(start, `'${raw}' has no hex digits`, 'write e.g. 0x1f');
        if (raw.length - 2 > MAX_HEX_DIGITS) fail(start, `number ${quote(raw)} is too large`, 'no setting takes more than 64 bits');
        value = BigInt(raw);
      } else {
        while (i < src.length && isDigit(src[i])) i++;
        raw = src.slice(start, i);
        if (raw.length > 1 && raw[0] === '0') {
          // xl reads numbers with strtol base 0, where 010 is octal 8: refuse rather than disagree with it.
          fail(start, `number ${raw} has a leading zero`, `write ${raw.replace(/^0+(?=\d)/, '')} (decimal) or 0x... (hex)`);
        }
        if (raw.length > MAX_DEC_DIGITS) fail(start, `number ${quote(raw)} is too large`, 'no setting takes more than 64 bits');
        value = BigInt(raw);
      }
      if (i < src.length && isIdentChar(src[i])) {
        let j = i;
        while (j < src.length && isIdentChar(src[j])) j++;
        const word = src.slice(start, j);
        fail(start, `${quote(word)} is not a number`, `quote values with units or letters, e.g. "${word}"`);
      }
      yield { kind: 'number', value, raw, line, column: col(start) };
    } else if (isIdentStart(c)) {
      const start = i;
      while (i < src.length && isIdentChar(src[i])) i++;
      yield { kind: 'ident', text: src.slice(start, i), line, column: col(start) };
    } else if (c === '=' || c === '[' || c === ']' || c === ',') {
      yield { kind: 'punct', text: c, line, column: col(i) };
      i++;
    } else if (c === '+' && src[i + 1] === '=') {
      yield { kind: 'punct', text: '+=', line, column: col(i) };
      i += 2;
    } else {
      checkChar(src, i, fail, false);
      fail(i, `unexpected character ${describeChar(src, i)}`, 'lines look like: key = "text", key = 42 or key = [ "a", "b" ]');
    }
  }
  yield { kind: 'eof', line, column: col(i) };
}

type Fail = (at: number, problem: string, hint?: string) => never;

function describeChar(src: string, i: number): string {
  const cp = src.codePointAt(i) ?? 0;
  const hex = `U+${cp.toString(16).toUpperCase().padStart(4, '0')}`;
  return cp >= 0x21 && cp < 0x7f ? `'${String.fromCodePoint(cp)}'` : hex;
}

/** Rejects characters that are never legitimate in a config file, even inside comments. */
function checkChar(src: string, i: number, fail: Fail, inComment: boolean): void {
  const code = src.charCodeAt(i);
  if (code === 0) fail(i, 'NUL byte in config file', 'config files are plain text; remove the NUL byte');
  if (BIDI.test(src[i])) {
    fail(i, `bidirectional control character ${describeChar(src, i)}`, 'it can make the file read differently from how it parses; remove it');
  }
  if (!inComment && ((code < 0x20 && code !== 0x09) || code === 0x7f)) {
    fail(i, `control character ${describeChar(src, i)}`, 'remove it');
  }
}

function lexString(src: string, start: number, fail: Fail): { value: string; end: number } {
  const q = src[start];
  let i = start + 1;
  let value = '';
  for (;;) {
    if (i >= src.length || src[i] === '\n') {
      fail(start, `unterminated string`, `close it with ${q} on the same line`);
    }
    const c = src[i];
    if (c === q) return { value, end: i + 1 };
    if (c === '\\') {
      const e = src[i + 1];
      if (e === '\\' || e === '"' || e === "'") {
        value += e;
        i += 2;
      } else if (e === 't') {
        value += '\t';
        i += 2;
      } else if (e === 'x' && isHex(src[i + 1 + 1] ?? '') && isHex(src[i + 3] ?? '')) {
        const code = parseInt(src.slice(i + 2, i + 4), 16);
        if (code < 0x20 || code === 0x7f) fail(i, `escape \\x${src.slice(i + 2, i + 4)} is a control character`, 'values are printable text');
        value += String.fromCharCode(code);
        i += 4;
      } else {
        const shown = e === undefined || e === '\n' ? 'at end of line' : `\\${e}`;
        fail(i, `unsupported escape ${shown}`, `supported: \\\\ \\" \\' \\t \\xHH; write \\\\ for a backslash`);
      }
    } else {
      checkChar(src, i, fail, false);
      value += c;
      i++;
    }
  }
}
