// Net driver domain entry point: one netback (with its L2 switch and optional uplink) serving
// every vif under our backend/vif directory, then privileges dropped.
import { Domain } from '../../src/domain/runtime.js';
import { connectXenstore } from '../../src/domain/xenstore.js';
import { dropDriverPrivileges } from '../../src/domain/sandbox.js';
import type { DomainBootArgs } from '../../src/domain/bootargs.js';
import { Netback } from '../../src/netback/netback.js';
import { TapUplink } from '../../src/netswitch/tap-uplink.js';
import { offloadNames, openNic } from '../../src/drivers/nic.js';
import { DeviceDirWatcher } from '../../src/xenbus/device.js';
import { VifBackend } from './vif.js';
import { VhostUserVif } from './vhost-vif.js';
import { TRANSPORT_KEY } from '../../src/vhost-user/xenstore-keys.js';

const log = (l: string) => process.stdout.write(`${l}\n`);
const dom = await Domain.boot();
const args = dom.bootArgs<DomainBootArgs>();
const xs = await connectXenstore(args.xenstore, log);
const netback = new Netback({ frames: dom.frames, mapper: dom.mapper, evtchn: dom.evtchn, log });
// The uplink: a NIC passed through to us (its DMA through the IOMMU), else a host TAP if configured.
const nic = (args.devices ?? []).find((d) => d.type === 'nic');
if (nic) {
  const d = await openNic(dom, nic.bdf);
  netback.setUplink(d);
  // with TSO the switch hands GSO frames to the NIC whole; without it, it segments them itself
  log(`netdom: uplink NIC ${nic.bdf}, offloads: ${offloadNames(d.offloads)}`);
} else if (args.uplink) {
  netback.setUplink(await TapUplink.open({ name: args.uplink }));
  log(`netdom: uplink TAP ${args.uplink}`);
}
const vifs = new Map<string, Promise<VifBackend | VhostUserVif | null>>();

/** A VM's vif says `ringside/transport = vhost-user`; anything else is a Xen-ABI vif. */
async function startVif(path: string): Promise<VifBackend | VhostUserVif> {
  const transport = (await xs.tryRead(`${path}/${TRANSPORT_KEY}`)) ?? 'netif';
  if (transport === 'vhost-user') return VhostUserVif.start(netback, xs, path, log);
  if (transport !== 'netif') throw new Error(`${path}/${TRANSPORT_KEY} = ${JSON.stringify(transport.slice(0, 40))}: expected netif or vhost-user`);
  return VifBackend.start(netback, xs, path, log);
}
const watcher = new DeviceDirWatcher(
  xs,
  `/local/domain/${dom.domid}/backend/vif`,
  2,
  (path) => {
    vifs.set(
      path,
      startVif(path).catch((e: Error) => {
        log(`netdom: vif ${path}: ${e.message}`);
        return null;
      }),
    );
  },
  (path) => {
    const v = vifs.get(path);
    vifs.delete(path);
    void v?.then((x) => x?.close());
    log(`netdom: vif ${path} removed`);
  },
);
await watcher.start();
// Serving VMs means binding vhost-user sockets as vifs arrive, in the directory dom0 gave us.
if (args.seccomp) dropDriverPrivileges(log, { listenUnix: args.vhostDir !== undefined });
log(`netdom ${dom.name}: switching vifs as dom${dom.domid}`);
