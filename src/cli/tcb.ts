// `ringside tcb`: how much code the platform must trust. The trusted computing base is hv plus
// dom0 (and the native addon both load); every other domain can be killed without losing
// isolation. hw, the emulated hardware, is listed on its own row and counted in neither: it stands
// for silicon, and what keeps devices in their place (the IOMMU driver, the platform rules) is
// hv's. Counted from the bundler's own record of what went into each bundle.
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from './paths.js';
import { table } from './table.js';

export interface TcbPart {
  domain: string;
  trusted: boolean;
  /** the emulated hardware process, not a domain */
  hardware: boolean;
  ownFiles: number;
  ownLines: number;
  dependencyBytes: number;
}

export interface TcbReport {
  parts: TcbPart[];
  nativeLines: number;
  trustedLines: number;
  totalLines: number;
}

const HARDWARE = 'hw';

const lines = (path: string) => readFileSync(path, 'utf8').split('\n').filter((l) => l.trim() !== '' && !/^\s*\/\//.test(l)).length;

export function measureTcb(): TcbReport {
  const root = packageRoot();
  const dir = join(root, 'dist', 'domains');
  if (!existsSync(dir)) throw new Error('dist/ is not built: run npm run build');
  const parts: TcbPart[] = [];
  const all = new Set<string>();
  const trusted = new Set<string>();
  for (const f of readdirSync(dir).filter((x) => x.endsWith('.meta.json')).sort()) {
    const domain = f.replace('.meta.json', '');
    const meta = JSON.parse(readFileSync(join(dir, f), 'utf8')) as { inputs: Record<string, { bytes: number }> };
    const own = Object.keys(meta.inputs).filter((p) => !p.includes('node_modules'));
    const isTrusted = domain === 'hv' || domain === 'dom0';
    const hardware = domain === HARDWARE;
    for (const p of own) {
      if (!hardware) all.add(p);
      if (isTrusted) trusted.add(p);
    }
    parts.push({
      domain,
      trusted: isTrusted,
      hardware,
      ownFiles: own.length,
      ownLines: own.reduce((n, p) => n + lines(join(root, p)), 0),
      dependencyBytes: Object.entries(meta.inputs).filter(([p]) => p.includes('node_modules')).reduce((n, [, v]) => n + v.bytes, 0),
    });
  }
  const nativeDir = join(root, 'native', 'src');
  const nativeLines = readdirSync(nativeDir).reduce((n, f) => n + lines(join(nativeDir, f)), 0);
  const sum = (s: Set<string>) => [...s].reduce((n, p) => n + lines(join(root, p)), 0);
  return { parts, nativeLines, trustedLines: sum(trusted) + nativeLines, totalLines: sum(all) + nativeLines };
}

export function formatTcb(r: TcbReport): string {
  const t = table(
    ['Domain', 'Trusted', 'Files', 'Lines', 'Deps(KiB)'],
    r.parts.map((p) => [p.domain, p.hardware ? 'hardware (emulated)' : p.trusted ? 'yes' : 'no', p.ownFiles, p.ownLines, (p.dependencyBytes / 1024).toFixed(0)]),
    new Set([2, 3, 4]),
  );
  const hw = r.parts.some((p) => p.hardware)
    ? `\n${HARDWARE} is the emulated hardware (VT-d unit, NVMe and NIC models), counted in neither figure: it models silicon, and the IOMMU driver and platform rules it obeys stay in hv.`
    : '';
  return `${t}\n\nnative addon: ${r.nativeLines} lines (loaded by every domain)\nTCB (hv + dom0 + addon, distinct lines): ${r.trustedLines} of ${r.totalLines} (${((100 * r.trustedLines) / r.totalLines).toFixed(0)}%)${hw}`;
}
