// Guest domain entry point: boot, connect to xenstore, and bring up a frontend for every device
// the toolstack gave us: each vbd becomes an NBD export, each vif a TAP in the guest's netns.
// Confined (the default), the process already lives in that namespace, holding CAP_NET_ADMIN
// there only, and may make sockets in its export directory and nothing else on the filesystem.
import { Domain } from '../../src/domain/runtime.js';
import { connectXenstore } from '../../src/domain/xenstore.js';
import { DeviceDirWatcher } from '../../src/xenbus/device.js';
import type { DomainBootArgs } from '../../src/domain/bootargs.js';
import { frontendDrivers } from './drivers.js';
import { dropGuestPrivileges } from '../../src/domain/sandbox.js';

const log = (l: string) => process.stdout.write(`${l}\n`);
const dom = await Domain.boot();
const args = dom.bootArgs<DomainBootArgs>();
const xs = await connectXenstore(args.xenstore, log);
if (args.seccomp) dropGuestPrivileges(log);
const home = `/local/domain/${dom.domid}`;
const drivers = frontendDrivers(dom, xs, args, log);
const watchers: DeviceDirWatcher[] = [];
for (const [type, drv] of Object.entries(drivers)) {
  const w = new DeviceDirWatcher(xs, `${home}/device/${type}`, 1, (p) => drv.add(p), (p) => drv.remove(p));
  await w.start();
  watchers.push(w);
}
log(`guest ${dom.name}: up as dom${dom.domid}`);
const stop = async () => {
  for (const w of watchers) await w.close();
  for (const drv of Object.values(drivers)) await drv.shutdown();
  process.exit(0);
};
process.on('SIGTERM', () => void stop());
process.on('SIGINT', () => void stop());
