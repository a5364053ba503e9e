// hv entry point. Its whole input is argv: where the domain bundles are, which kind the
// control domain is, and opaque bytes for it. Everything else arrives as hypercalls.
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { native } from '../../src/native/index.js';
import { Hypervisor } from './hypervisor.js';

// hv holds every domain's memory: no domain of the same uid may open /proc/<hv>/mem or /fd.
native.setUndumpable();

const { values } = parseArgs({
  options: {
    dist: { type: 'string' },
    dom0: { type: 'string', default: 'dom0' },
    'dom0-args': { type: 'string', default: '' },
  },
});

const distDir = resolve(values.dist ?? join(dirname(fileURLToPath(import.meta.url)), '..'));
const log = (line: string) => process.stdout.write(`${new Date().toISOString()} ${line}\n`);
const hv = new Hypervisor({ bundleDirs: [join(distDir, 'domains')], log, onShutdown: () => setImmediate(() => process.exit(0)) });
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(sig, () => hv.shutdown(`signal ${sig}`));
try {
  hv.startControlDomain(values.dom0, Buffer.from(values['dom0-args'], 'base64'));
  log(`hv: pid ${process.pid}, control domain started`);
} catch (e) {
  log(`hv: cannot start: ${(e as Error).message}`);
  process.exit(1);
}
