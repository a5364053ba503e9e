// `ringside tcb`: how much code the platform must trust. The trusted computing base is hv, dom0
// and hw, plus the native addon and the confinement launcher; every other domain can be killed
// without losing isolation. hw stands for silicon, but it is trusted all the same: its VT-d unit
// decides every DMA translation and it maps every domain's memory. It is kept apart from hv so
// that a device model's fault cannot take hv down, not because it is less trusted. Counted from
// the bundler's own record of what went into each bundle.
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
  /** of those, the lines in the domain's own folder (domains/<name>/); the rest is library it pulls in */
  homeLines: number;
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
    const isTrusted = domain === 'hv' || domain === 'dom0' || domain === HARDWARE;
    const hardware = domain === HARDWARE;
    for (const p of own) {
      all.add(p);
      if (isTrusted) trusted.add(p);
    }
    parts.push({
      domain,
      trusted: isTrusted,
      hardware,
      ownFiles: own.length,
      ownLines: own.reduce((n, p) => n + lines(join(root, p)), 0),
      homeLines: own.filter((p) => p.startsWith(`domains/${domain}/`)).reduce((n, p) => n + lines(join(root, p)), 0),
      dependencyBytes: Object.entries(meta.inputs).filter(([p]) => p.includes('node_modules')).reduce((n, [, v]) => n + v.bytes, 0),
    });
  }
  let nativeLines = 0;
  for (const sub of ['src', 'confine']) {
    const d = join(root, 'native', sub);
    if (existsSync(d)) nativeLines += readdirSync(d).reduce((n, f) => n + lines(join(d, f)), 0);
  }
  const sum = (s: Set<string>) => [...s].reduce((n, p) => n + lines(join(root, p)), 0);
  return { parts, nativeLines, trustedLines: sum(trusted) + nativeLines, totalLines: sum(all) + nativeLines };
}

export function formatTcb(r: TcbReport): string {
  const t = table(
    ['Domain', 'Trusted', 'Files', 'Lines', 'Own', 'Library', 'Deps(KiB)'],
    r.parts.map((p) => [p.domain, p.hardware ? 'yes (hardware)' : p.trusted ? 'yes' : 'no', p.ownFiles, p.ownLines, p.homeLines, p.ownLines - p.homeLines, (p.dependencyBytes / 1024).toFixed(0)]),
    new Set([2, 3, 4, 5, 6]),
  );
  const hw = r.parts.some((p) => p.hardware)
    ? `\n${HARDWARE} is the emulated hardware (VT-d unit, NVMe and NIC models). It is trusted: its unit decides every DMA translation and it maps every domain's memory. It runs apart from hv, confined, so a device model's fault cannot take hv down.`
    : '';
  return `${t}\n\nOwn: lines in the domain's folder (domains/NAME/); Library: what its bundle pulls in from src/ and iommu/.\nnative addon and ringside-confine: ${r.nativeLines} lines (the addon is loaded by every domain)\nTCB (hv + dom0 + hw + native, distinct lines): ${r.trustedLines} of ${r.totalLines} (${((100 * r.trustedLines) / r.totalLines).toFixed(0)}%)${hw}`;
}
