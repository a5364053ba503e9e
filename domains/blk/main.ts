// Block driver domain entry point: like `xl devd`, follow our backend/vbd directory and run a
// blkback instance for every vbd the toolstack assigns us, then drop privileges.
import { Domain } from '../../src/domain/runtime.js';
import { connectXenstore } from '../../src/domain/xenstore.js';
import { dropDriverPrivileges } from '../../src/domain/sandbox.js';
import type { DomainBootArgs } from '../../src/domain/bootargs.js';
import { DeviceDirWatcher } from '../../src/xenbus/device.js';
import { VbdBackend, mediumOpener } from './vbd.js';
import { VhostUserVbd } from './vhost-vbd.js';
import { TRANSPORT_KEY } from '../../src/vhost-user/xenstore-keys.js';

const log = (l: string) => process.stdout.write(`${l}\n`);
const dom = await Domain.boot();
const args = dom.bootArgs<DomainBootArgs>();
const xs = await connectXenstore(args.xenstore, log);
const openMedium = mediumOpener(dom);
const vbds = new Map<string, Promise<VbdBackend | VhostUserVbd | null>>();

/** A VM's disk says `ringside/transport = vhost-user`; anything else is a Xen-ABI vbd. */
async function startVbd(path: string): Promise<VbdBackend | VhostUserVbd> {
  const transport = (await xs.tryRead(`${path}/${TRANSPORT_KEY}`)) ?? 'blkif';
  if (transport === 'vhost-user') return VhostUserVbd.start(xs, path, openMedium, log);
  if (transport !== 'blkif') throw new Error(`${path}/${TRANSPORT_KEY} = ${JSON.stringify(transport.slice(0, 40))}: expected blkif or vhost-user`);
  return VbdBackend.start(dom, xs, path, openMedium, log);
}
const watcher = new DeviceDirWatcher(
  xs,
  `/local/domain/${dom.domid}/backend/vbd`,
  2,
  (path) => {
    vbds.set(
      path,
      startVbd(path).catch((e: Error) => {
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
// Serving VMs means binding vhost-user sockets as vbds arrive, in the directory dom0 gave us.
if (args.seccomp) dropDriverPrivileges(log, { listenUnix: args.vhostDir !== undefined });
log(`blkdom ${dom.name}: serving vbds as dom${dom.domid}`);
