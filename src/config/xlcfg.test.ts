import { describe, expect, it } from 'vitest';
import { parseXlCfg, MAX_CONFIG_BYTES, type CfgList } from './xlcfg.js';
import { configError } from './testing/expect-error.js';

const F = 'sys/test.cfg';
const parse = (s: string | Uint8Array) => parseXlCfg(s, F);

describe('xl.cfg parser', () => {
  it('reads strings, numbers, lists and comments in order with positions', () => {
    const cfg = parse(
      [
        '# comment',
        'name = "guest1"   # trailing',
        "kernel = 'it''s'".replace("''", "\\'"),
        'memory = 256',
        'mask = 0xFF',
        'disk = [ "a",',
        '   # inside',
        "   'b', ]",
        'empty = []',
        'x = 1; y = "two"',
      ].join('\n'),
    );
    expect([...cfg.entries.keys()]).toEqual(['name', 'kernel', 'memory', 'mask', 'disk', 'empty', 'x', 'y']);
    expect(cfg.entries.get('name')).toMatchObject({ line: 2, column: 1, value: { kind: 'string', value: 'guest1', line: 2, column: 8 } });
    expect(cfg.entries.get('kernel')?.value).toMatchObject({ value: "it's" });
    expect(cfg.entries.get('memory')?.value).toMatchObject({ kind: 'number', value: 256n, raw: '256' });
    expect(cfg.entries.get('mask')?.value).toMatchObject({ kind: 'number', value: 255n });
    const disk = cfg.entries.get('disk')?.value as CfgList;
    expect(disk.items.map((i) => [i.kind === 'string' ? i.value : '', i.line])).toEqual([
      ['a', 6],
      ['b', 8],
    ]);
    expect((cfg.entries.get('empty')?.value as CfgList).items).toEqual([]);
    expect(cfg.entries.get('y')?.line).toBe(10);
    expect(cfg.dir).toBe('sys');
  });

  it('handles escapes, CRLF, BOM and a final line without newline', () => {
    const cfg = parse('\ufeffa = "q\\"\\\\\\t\\x41"\r\nb = 2');
    expect(cfg.entries.get('a')?.value).toMatchObject({ value: 'q"\\\tA' });
    expect(cfg.entries.get('b')?.value).toMatchObject({ value: 2n });
  });

  it('appends with += as xl does', () => {
    const cfg = parse('vif = ["a"]\nvif += ["b"]\npci += ["c"]');
    expect((cfg.entries.get('vif')?.value as CfgList).items.map((i) => i.kind === 'string' && i.value)).toEqual(['a', 'b']);
    expect(cfg.entries.get('pci')?.value.kind).toBe('list');
  });

  const bad: [string, string | Uint8Array, number, RegExp, string?][] = [
    ['duplicate key', 'memory = 1\nname = "x"\nmemory = 2', 3, /key 'memory': set twice \(first at line 1\)/, 'memory'],
    ['unterminated string', 'name = "abc\nmemory = 1', 1, /:1: key 'name': unterminated string; close it with "/, 'name'],
    ['unterminated string at EOF', "name = 'abc", 1, /unterminated string/],
    ['unclosed list', 'disk = [ "a",\n "b"\n', 1, /key 'disk': list is not closed; add '\]'/, 'disk'],
    ['list running into the next setting', 'disk = [ "a",\n "b"\nmemory = 5', 3, /key 'disk': list opened at line 1 is not closed before word "memory"; add '\]'/, 'disk'],
    ['missing comma in list', 'disk = [ "a" "b" ]', 1, /expected ',' or '\]' in list, got string "b"/, 'disk'],
    ['nested list', 'disk = [ ["a"] ]', 1, /nested lists are not supported/, 'disk'],
    ['bare word value', 'name = guest1', 1, /key 'name': bare word "guest1" is not a value; quote strings: name = "guest1"/, 'name'],
    ['number with unit', 'memory = 256M', 1, /key 'memory': "256M" is not a number; quote values/, 'memory'],
    ['leading zero', 'memory = 010', 1, /leading zero; write 10/],
    ['empty hex', 'memory = 0x', 1, /has no hex digits/],
    ['huge number', `memory = ${'9'.repeat(30)}`, 1, /is too large/],
    ['huge hex', `memory = 0x${'f'.repeat(17)}`, 1, /is too large/],
    ['missing value', 'memory =\n', 1, /key 'memory': missing value, got end of line/, 'memory'],
    ['missing =', 'memory 5', 1, /expected '=' after 'memory', got number 5/, 'memory'],
    ['two values', 'memory = 5 6', 1, /key 'memory': unexpected number 6 after the value/, 'memory'],
    ['statement starts with a value', '"x" = 1', 1, /expected a setting name, got string "x"/],
    ['NUL byte', 'name = "a\0b"', 1, /NUL byte/],
    ['NUL byte outside string', 'name = "a"\n\0', 2, /test\.cfg:2:1: NUL byte/],
    ['control char in string', 'name = "a\u0007b"', 1, /control character U\+0007/],
    ['escape to control char', 'name = "a\\x01"', 1, /control character/],
    ['unknown escape', 'name = "a\\qb"', 1, /unsupported escape \\q/],
    ['bidi override', 'name = "a\u202eb"', 1, /bidirectional control character U\+202E/],
    ['stray character', 'name = "a"\n@', 2, /unexpected character '@'/],
    ['+= on a string', 'name = "a"\nname += "b"', 2, /'\+=' needs a list on both sides/, 'name'],
    ['non-UTF-8', Uint8Array.from([...Buffer.from('name = "a"\nmemory = "'), 0xff, 0xfe, ...Buffer.from('"\n')]), 2, /file is not valid UTF-8/],
  ];
  for (const [what, src, line, re, key] of bad) {
    it(`rejects ${what} with file:line`, () => {
      const e = configError(() => parse(src));
      expect(e.file).toBe(F);
      expect(e.line).toBe(line);
      expect(e.message.startsWith(`${F}:${line}`)).toBe(true);
      expect(e.message).toMatch(re);
      if (key) expect(e.key).toBe(key);
    });
  }

  it('parses a 10k-element list quickly', () => {
    const src = `disk = [\n${Array.from({ length: 10_000 }, (_, i) => `  "d${i}",`).join('\n')}\n]`;
    const t0 = performance.now();
    const cfg = parse(src);
    expect((cfg.entries.get('disk')?.value as CfgList).items).toHaveLength(10_000);
    expect((cfg.entries.get('disk')?.value as CfgList).items[9999].line).toBe(10_001);
    expect(performance.now() - t0).toBeLessThan(2000);
  });

  it('parses a very long line and refuses an oversize file', () => {
    const long = 'x'.repeat(500_000);
    expect(parse(`name = "${long}"`).entries.get('name')?.value).toMatchObject({ value: long });
    const e = configError(() => parse(new Uint8Array(MAX_CONFIG_BYTES + 1)));
    expect(e.message).toMatch(/^sys\/test\.cfg: file is \d+ bytes, more than/);
    expect(configError(() => parse(' '.repeat(MAX_CONFIG_BYTES + 1))).message).toMatch(/longer than/);
  });

  it('survives random garbage with ConfigErrors only', () => {
    let seed = 1;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
    const alphabet = 'ab=[]",\'#\n\\x0 9;+\t\u0000\u00ff\u202e';
    for (let n = 0; n < 500; n++) {
      const s = Array.from({ length: 1 + Math.floor(rnd() * 60) }, () => alphabet[Math.floor(rnd() * alphabet.length)]).join('');
      try {
        parse(s);
      } catch (e) {
        expect((e as Error).name).toBe('ConfigError');
      }
    }
  });
});
