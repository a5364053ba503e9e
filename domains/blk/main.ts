// Block driver domain entry point: like `xl devd`, follow our backend/vbd directory and run a
// blkback instance for every vbd the toolstack assigns us, then drop privileges.
import { Domain } from '../../src/domain/runtime.js';
import { connectXenstore } from '../../src/domain/xenstore.js';
import { dropDriverPrivileges } from '../../src/domain/sandbox.js';
import type { DomainBootArgs } from '../../src/domain/bootargs.js';
import { DeviceDirWatcher } from '../../src/xenbus/device.js';
import { VbdBackend, mediumOpener } from './vbd.js';

const log = (l: string) => process.stdout.write(`${l}\n`);
const dom = await Domain.boot();
const args = dom.bootArgs<DomainBootArgs>();
const xs = await connectXenstore(args.xenstore, log);
const openMedium = mediumOpener(dom);
const vbds = new Map<string, Promise<VbdBackend | null>>();
const watcher = new DeviceDirWatcher(
  xs,
  `/local/domain/${dom.domid}/backend/vbd`,
  2,
  (path) => {
    vbds.set(
      path,
      VbdBackend.start(dom, xs, path, openMedium, log).catch((e: Error) => {
        log(`blkdom: vbd ${path}: ${e.message}`);
        return null;
      }),
    );
  },
  (path) => {
    const b = vbds.get(path);
    vbds.delete(path);
    void b?.then((x) => x?.close());
    log(`blkdom: vbd ${path} removed`);
  },
);
await watcher.start();
if (args.seccomp) dropDriverPrivileges(log);
log(`blkdom ${dom.name}: serving vbds as dom${dom.domid}`);
