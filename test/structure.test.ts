// Imports run one way: the library (src/, iommu/) never imports a domain or a test, and a domain
// never imports another domain's folder or a test. Tests may import anything. Checked over every
// import of every file, so a new import the wrong way fails here with the file and the line.
import { describe, expect, it } from 'vitest';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { ROOT } from './support/platform.js';

function files(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(join(ROOT, dir), { withFileTypes: true })) {
    const rel = join(dir, e.name);
    if (e.isDirectory()) out.push(...files(rel));
    else if (/\.(ts|mts)$/.test(e.name) && !e.name.endsWith('.d.ts')) out.push(rel);
  }
  return out;
}

const IMPORT = /(?:^|\s)(?:import|export)\s[^;]*?from\s*['"]([^'"]+)['"]|import\s*\(\s*['"]([^'"]+)['"]\s*\)|^\s*import\s*['"]([^'"]+)['"]/gm;

/** Every relative import of `file`, resolved to a path from the root, with its line. */
function importsOf(file: string): { target: string; line: number }[] {
  const text = readFileSync(join(ROOT, file), 'utf8');
  const out: { target: string; line: number }[] = [];
  for (const m of text.matchAll(IMPORT)) {
    const spec = m[1] ?? m[2] ?? m[3];
    if (!spec.startsWith('.')) continue;
    const target = relative(ROOT, resolve(ROOT, dirname(file), spec)).replace(/\.js$/, '.ts');
    out.push({ target, line: text.slice(0, m.index).split('\n').length });
  }
  return out;
}

const isTest = (f: string) => /\.test\.ts$/.test(f) || f.startsWith('test/') || f.includes('/testing/');
const top = (f: string) => f.split('/')[0];

describe('the import direction', () => {
  it('finds imports at all (the scanner sees this file\'s own)', () => {
    expect(importsOf('test/structure.test.ts').map((i) => i.target)).toContain('test/support/platform.ts');
  });

  it('the library imports no domain and no test; a domain imports no other domain and no test', () => {
    const wrong: string[] = [];
    for (const f of [...files('src'), ...files('iommu'), ...files('domains')]) {
      if (isTest(f)) continue;
      for (const { target, line } of importsOf(f)) {
        const from = top(f);
        const to = top(target);
        // domains/<kind>/: a domain's code is its own; what two processes share lives in the library
        const otherDomain = from === 'domains' && to === 'domains' && f.split('/')[1] !== target.split('/')[1];
        const bad = to === 'test' || to === 'dist' || ((from === 'src' || from === 'iommu') && to === 'domains') || otherDomain;
        if (bad) wrong.push(`${f}:${line} imports ${target}`);
      }
    }
    expect(wrong).toEqual([]);
  });
});
