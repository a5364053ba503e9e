// Control domain entry point: boot, read the system named in the boot arguments, build it, and
// answer the CLI on the control socket.
import { rmSync } from 'node:fs';
import { Domain } from '../../src/domain/runtime.js';
import { Toolstack } from './toolstack.js';
import { startControlServer } from './control-server.js';

const log = (l: string) => process.stdout.write(`${l}\n`);
const dom = await Domain.boot();
const args = dom.bootArgs<{ stateDir?: unknown; systemDir?: unknown }>();
if (typeof args.stateDir !== 'string' || typeof args.systemDir !== 'string') {
  log('dom0: boot arguments need stateDir and systemDir');
  process.exit(2);
}
const ts = new Toolstack(dom, args.stateDir, args.systemDir, log);
const server = await startControlServer(ts.state.control, ts, log);
process.on('exit', () => rmSync(ts.state.control, { force: true }));
void server;
log(`dom0: control socket ${ts.state.control}`);
void ts.start();
