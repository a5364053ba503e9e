// Block driver domain entry point: like `xl devd`, follow our backend/vbd directory and run a
// blkback instance for every device the toolstack assigns us.
import { Domain } from '../../src/domain/runtime.js';
import { connectXenstore } from '../../src/domain/xenstore.js';
import { DeviceDirWatcher } from '../../src/xenbus/device.js';
import type { DomainBootArgs } from '../../src/domain/bootargs.js';

const log = (l: string) => process.stdout.write(`${l}\n`);
const dom = await Domain.boot();
const args = dom.bootArgs<DomainBootArgs>();
const xs = await connectXenstore(args.xenstore, log);
const w = new DeviceDirWatcher(xs, `/local/domain/${dom.domid}/backend/vbd`, 2, (p) => log(`blkdom: new vbd ${p}`), (p) => log(`blkdom: vbd ${p} removed`));
await w.start();
log(`blkdom ${dom.name}: up as dom${dom.domid}`);
