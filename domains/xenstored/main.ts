// xenstored domain entry: boot like any domain, then serve the store on the sockets the
// toolstack named (a privileged one for dom0 and administrators, one per introduced domain).
import { Domain } from '../../src/domain/runtime.js';
import { applySeccompRole } from '../../src/domain/sandbox.js';
import { startXenstored } from './server.js';

const dom = await Domain.boot();
const args = dom.bootArgs<{ privilegedSocket?: unknown; domainSocketDir?: unknown }>();
if (typeof args.privilegedSocket !== 'string' || typeof args.domainSocketDir !== 'string') {
  process.stderr.write('xenstored: boot arguments need privilegedSocket and domainSocketDir paths\n');
  process.exit(2);
}
// xenstored creates sockets on INTRODUCE, so it keeps socket/bind; it never needs to exec.
applySeccompRole('xenstored', (l) => process.stdout.write(`xenstored: ${l}\n`));
const xs = await startXenstored({
  privilegedSocket: args.privilegedSocket,
  domainSocketDir: args.domainSocketDir,
  log: (m) => process.stdout.write(`${m}\n`),
});
process.stdout.write(`xenstored: serving on ${xs.privilegedSocket}\n`);
const stop = () => void xs.close().then(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
