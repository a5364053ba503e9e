// Test-only domain for the net integration tests: it can be a net driver domain (netback + switch)
// or a guest (netfront + TAP), connected with parameters the test passes directly (no xenstore),
// and it can play a hostile frontend by writing its rings by hand. Commands arrive as JSON lines
// on a Unix socket named in the boot arguments.
import { Domain } from '../../../src/domain/runtime.js';
import { NETTXF_more_data, netifTxRequest } from '../../../src/abi/netif.js';
import { SRING_REQ_PROD } from '../../../src/abi/sring.js';
import type { FrontendServices, NetbackServices } from '../../../src/domain/services.js';
import { parseMacBytes } from '../../../src/packet/mac.js';
import type { VifConnectParams } from '../../../src/netif/params.js';
import { Netback, type NetbackOptions } from '../../../src/netback/netback.js';
import type { Vif } from '../../../src/netback/vif.js';
import { Netfront } from '../../../src/netfront/netfront.js';
import { TapAdapter } from '../../../src/tap/adapter.js';
import { TapUplink } from '../../../src/netswitch/tap-uplink.js';
import { serveCommands, type Command } from '../serve.js';


const dom = await Domain.boot();
const { control } = dom.bootArgs<{ control: string }>();
const log = (l: string) => process.stdout.write(`${l}\n`);
const env: NetbackServices & FrontendServices = { frames: dom.frames, grants: dom.grants, mapper: dom.mapper, evtchn: dom.evtchn, log };

let nb: Netback | null = null;
const vifs = new Map<string, Vif>();
let nf: Netfront | null = null;
let tap: TapAdapter | null = null;

function vifStats(v: Vif) {
  return { name: v.portName, dead: v.dead, fatalReason: v.fatalReason, ...v.vstats, spoofDrops: v.stats.spoofDrops, backlog: v.queues.map((q) => q.backlog.count) };
}

async function run(c: Command): Promise<unknown> {
  switch (c.cmd) {
    case 'backInit':
      nb = new Netback(env, (c.opts ?? {}) as NetbackOptions);
      // the hypercall path stays reachable for the tests that want it
      return { copyRings: c.copyRings === false ? false : await nb.openCopyRings() };
    case 'backConnect': {
      const p = c.params as VifConnectParams;
      const v = await nb!.connect(p);
      vifs.set(p.name, v);
      return {};
    }
    case 'backDisconnect': {
      const v = vifs.get(String(c.name));
      if (v) await nb!.disconnect(v);
      return {};
    }
    case 'uplink': {
      const u = await TapUplink.open({ name: String(c.name), netns: c.netns as string | undefined });
      nb!.setUplink(u);
      return {};
    }
    case 'backStats':
      return { vifs: [...vifs.values()].map(vifStats), uplink: nb!.uplinkStats, rounds: nb!.rounds, copyCalls: nb!.copyCalls, cpu: process.cpuUsage() };
    case 'frontInit':
      nf = await Netfront.create(env, { backendDomid: Number(c.backendDomid), mac: String(c.mac), queues: Number(c.queues ?? 1), txBuffers: Number(c.txBuffers ?? 16) });
      nf.onFault((r) => log(`netfront fault: ${r}`));
      return { info: nf.connectInfo };
    case 'frontReconnect':
      return { info: await nf!.reconnect() };
    case 'tap':
      tap = await TapAdapter.create({ netfront: nf!, netns: String(c.netns), mac: String(c.mac), ip: c.ip as string | undefined, mtu: Number(c.mtu ?? 1500), log });
      return {};
    case 'frontStats':
      return { nf: nf!.stats, tap: tap?.stats ?? null, cpu: process.cpuUsage() };
    case 'sendForged': {
      // Frames whose source MAC is not this vif's, as a guest that forges its address sends them.
      const f = new Uint8Array(Number(c.len ?? 200)).fill(0x5a);
      f.set(parseMacBytes(String(c.dst)), 0);
      f.set(parseMacBytes(String(c.src)), 6);
      f[12] = 0x08;
      f[13] = 0x00;
      let sent = 0;
      for (let i = 0; i < Number(c.count ?? 1); i++) {
        if (nf!.send(f)) sent++;
        else await new Promise((r) => setTimeout(r, 1));
      }
      return { sent };
    }
    // ---- hostile frontend ----
    case 'txGref': {
      const gfn = dom.frames.alloc();
      return { gref: dom.grants.grantAccess(Number(c.domid), gfn, true) };
    }
    case 'rawTx': {
      const q = nf!.queues[0];
      const ring = q.tx;
      for (const r of c.reqs as { gref: number; offset: number; flags: number; id: number; size: number }[]) {
        netifTxRequest.write(ring.view, ring.produceRequest(), r.gref, r.offset, r.flags, r.id, r.size);
      }
      ring.pushRequests();
      dom.evtchn.notify(q.portTx);
      return {};
    }
    case 'chain': {
      const q = nf!.queues[0];
      const ring = q.tx;
      const n = Number(c.n);
      for (let i = 0; i < n; i++) netifTxRequest.write(ring.view, ring.produceRequest(), Number(c.gref), 0, i < n - 1 ? NETTXF_more_data : 0, i, i === 0 ? n * 100 : 100);
      ring.pushRequests();
      dom.evtchn.notify(q.portTx);
      return {};
    }
    case 'setTxProd': {
      const q = nf!.queues[0];
      q.tx.view.setUint32(SRING_REQ_PROD, Number(c.value) >>> 0, true);
      dom.evtchn.notify(q.portTx);
      return {};
    }
    case 'starveRx': {
      // Stop consuming and posting rx (the XSA-392 frontend): netdom fills what was posted, then
      // has nowhere to put frames. Withdrawing the posted buffers instead (req_prod back to what
      // we had consumed) raced a response already on its way: netdom then rightly saw req_prod
      // behind its own responses and cut the vif off as bogus before any backlog or stall.
      nf!.queues[0].dead = true;
      return {};
    }
    case 'shutdown':
      await tap?.close();
      tap = null;
      await nf?.close();
      await nb?.close();
      setTimeout(() => process.exit(0), 20);
      return {};
    default:
      throw new Error(`unknown command ${c.cmd}`);
  }
}


for (const sig of ['SIGTERM', 'SIGINT'] as const) {
  process.on(sig, () => {
    void tap?.close().finally(() => process.exit(0));
  });
}
serveCommands(control, run, () => log(`nettest ${dom.name} ready`));
