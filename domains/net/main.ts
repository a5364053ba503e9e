// Net driver domain entry point: follow our backend/vif directory and run netback for every vif.
import { Domain } from '../../src/domain/runtime.js';
import { connectXenstore } from '../../src/domain/xenstore.js';
import { DeviceDirWatcher } from '../../src/xenbus/device.js';
import type { DomainBootArgs } from '../../src/domain/bootargs.js';

const log = (l: string) => process.stdout.write(`${l}\n`);
const dom = await Domain.boot();
const args = dom.bootArgs<DomainBootArgs>();
const xs = await connectXenstore(args.xenstore, log);
const w = new DeviceDirWatcher(xs, `/local/domain/${dom.domid}/backend/vif`, 2, (p) => log(`netdom: new vif ${p}`), (p) => log(`netdom: vif ${p} removed`));
await w.start();
log(`netdom ${dom.name}: up as dom${dom.domid}`);
