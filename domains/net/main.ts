// Net driver domain entry point: one netback (with its L2 switch and optional uplink) serving
// every vif under our backend/vif directory, then privileges dropped.
import { Domain } from '../../src/domain/runtime.js';
import { connectXenstore } from '../../src/domain/xenstore.js';
import { dropDriverPrivileges } from '../../src/domain/sandbox.js';
import type { DomainBootArgs } from '../../src/domain/bootargs.js';
import { Netback } from '../../src/netback/netback.js';
import { TapUplink } from '../../src/netswitch/tap-uplink.js';
import { offloadNames, openNic } from '../../src/drivers/nic.js';
import { serveBackendDir } from '../../src/xenbus/backend-dir.js';
import { VifBackend } from './vif-xenbus.js';
import { VhostUserVif } from './vhost-vif.js';

const log = (l: string) => process.stdout.write(`${l}\n`);
const dom = await Domain.boot();
const args = dom.bootArgs<DomainBootArgs>();
const xs = await connectXenstore(args.xenstore, log);
const netback = new Netback({ frames: dom.frames, mapper: dom.mapper, evtchn: dom.evtchn, log });
// grant copies go through rings shared with hv, not a hypercall message per batch
if (await netback.openCopyRings()) log('netdom: grant copies on two copy rings shared with hv');
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
await serveBackendDir(xs, {
  dir: `/local/domain/${dom.domid}/backend/vif`,
  kind: 'vif',
  who: 'netdom',
  native: 'netif',
  startNative: (path) => VifBackend.start(netback, xs, path, log),
  startVhostUser: (path) => VhostUserVif.start(netback, xs, path, log),
  log,
});
// Serving VMs means binding vhost-user sockets as vifs arrive, in the directory dom0 gave us.
if (args.seccomp) dropDriverPrivileges(log, { listenUnix: args.vhostDir !== undefined });
log(`netdom ${dom.name}: switching vifs as dom${dom.domid}`);
