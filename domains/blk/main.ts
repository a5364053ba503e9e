// Block driver domain entry point: like `xl devd`, follow our backend/vbd directory and run a
// blkback instance for every vbd the toolstack assigns us, then drop privileges.
import { Domain } from '../../src/domain/runtime.js';
import { connectXenstore } from '../../src/domain/xenstore.js';
import { dropDriverPrivileges } from '../../src/domain/sandbox.js';
import type { DomainBootArgs } from '../../src/domain/bootargs.js';
import { serveBackendDir } from '../../src/xenbus/backend-dir.js';
import { VbdBackend, mediumOpener } from './vbd-xenbus.js';
import { VhostUserVbd } from './vhost-vbd.js';

const log = (l: string) => process.stdout.write(`${l}\n`);
const dom = await Domain.boot();
const args = dom.bootArgs<DomainBootArgs>();
const xs = await connectXenstore(args.xenstore, log);
const openMedium = mediumOpener(dom);
await serveBackendDir(xs, {
  dir: `/local/domain/${dom.domid}/backend/vbd`,
  kind: 'vbd',
  who: 'blkdom',
  native: 'blkif',
  startNative: (path) => VbdBackend.start(dom, xs, path, openMedium, log),
  startVhostUser: (path) => VhostUserVbd.start(xs, path, openMedium, log),
  log,
});
// Serving VMs means binding vhost-user sockets as vbds arrive, in the directory dom0 gave us.
if (args.seccomp) dropDriverPrivileges(log, { listenUnix: args.vhostDir !== undefined });
log(`blkdom ${dom.name}: serving vbds as dom${dom.domid}`);
