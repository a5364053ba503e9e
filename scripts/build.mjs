// Bundles every domain entry point and the CLI with esbuild. Each domain is one self-contained
// file under dist/domains/, so hv spawns `node dist/domains/<kind>.js` and nothing else.
import { build } from 'esbuild';
import { readdirSync, existsSync, chmodSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const domains = readdirSync(join(root, 'domains'), { withFileTypes: true })
  .filter((d) => d.isDirectory() && existsSync(join(root, 'domains', d.name, 'main.ts')))
  .map((d) => d.name);

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
  ...domains.map((d) =>
    build({ ...common, entryPoints: [join(root, 'domains', d, 'main.ts')], outfile: join(root, 'dist', 'domains', `${d}.js`) }),
  ),
  build({ ...common, entryPoints: [join(root, 'src', 'cli', 'main.ts')], outfile: join(root, 'dist', 'ringside.js'),
    banner: { js: "#!/usr/bin/env node\n" + common.banner.js } }),
]);
chmodSync(join(root, 'dist', 'ringside.js'), 0o755);
