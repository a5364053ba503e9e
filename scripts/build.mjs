// Bundles every domain entry point and the CLI with esbuild. Each domain is one self-contained
// file under dist/domains/, so hv spawns `node dist/domains/<kind>.js` and nothing else. hv itself
// and hw (the emulated hardware hv starts at platform_init, domains/hw) are bundled there too;
// hv refuses them as domain kinds.
import { build } from 'esbuild';
import { readdirSync, existsSync, chmodSync, writeFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const kinds = (dir) =>
  existsSync(dir)
    ? readdirSync(dir, { withFileTypes: true })
        .filter((d) => d.isDirectory() && existsSync(join(dir, d.name, 'main.ts')))
        .map((d) => d.name)
    : [];
const domains = kinds(join(root, 'domains'));
// Test-only domain kinds go to their own folder, which production hv never searches.
const testDomains = kinds(join(root, 'test', 'domains'));

const common = {
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'esm',
  sourcemap: true,
  logLevel: 'warning',
  external: ['msgpackr', 'msgpackr-extract', '*.node'],
  banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
};

await Promise.all([
  // The metafile lists every source a domain's bundle contains: `ringside tcb` reads it.
  ...domains.map((d) =>
    build({ ...common, metafile: true, entryPoints: [join(root, 'domains', d, 'main.ts')], outfile: join(root, 'dist', 'domains', `${d}.js`) }).then(
      (r) => writeFileSync(join(root, 'dist', 'domains', `${d}.meta.json`), JSON.stringify(r.metafile)),
    ),
  ),
  ...testDomains.map((d) =>
    build({ ...common, entryPoints: [join(root, 'test', 'domains', d, 'main.ts')], outfile: join(root, 'dist', 'test-domains', `${d}.js`) }),
  ),
  // The ring lab's peer process (both sides of the TS ring run as separate processes).
  build({ ...common, entryPoints: [join(root, 'src', 'bench', 'ring', 'peer.ts')], outfile: join(root, 'dist', 'bench', 'ring-peer.js') }),
  existsSync(join(root, 'src', 'cli', 'main.ts')) && build({ ...common, entryPoints: [join(root, 'src', 'cli', 'main.ts')], outfile: join(root, 'dist', 'ringside.js'),
    banner: { js: "#!/usr/bin/env node\n" + common.banner.js } }),
]);
if (existsSync(join(root, 'dist', 'ringside.js'))) chmodSync(join(root, 'dist', 'ringside.js'), 0o755);
