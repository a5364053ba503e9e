// A guest for tests: blkfront exported over NBD, plus a hostile mode that writes raw garbage into
// its ring. Connected with parameters from the control socket instead of xenstore.
import { Domain } from '../../../src/domain/runtime.js';
import { Blkfront } from '../../../src/blkfront/device.js';
import { NbdServer } from '../../../src/nbd/server.js';
import type { BlkbackConnectInfo, BlkbackFeatures } from '../../../src/blkif/features.js';
import {
  BLKIF_OP_READ, BLKIF_OP_WRITE, writeBlkifDiscard,
} from '../../../src/abi/blkif.js';
import { HostileFront } from '../../../src/blkif/testing/hostile-front.js';
import { serveControl, type Command } from '../../block/support/control.js';

const dom = await Domain.boot();
const { control } = dom.bootArgs<{ control: string }>();
const log = (l: string) => process.stderr.write(`${l}\n`);
const env = { grants: dom.grants, frames: dom.frames, evtchn: dom.evtchn, log };
let front: Blkfront | null = null;
let nbd: NbdServer | null = null;
let hostile: HostileFront | null = null;
let page: { ref: number; bytes: Uint8Array } | null = null;

async function run(c: Command): Promise<unknown> {
  switch (c.cmd) {
    case 'prepare':
      front ??= new Blkfront(env, { name: 'xvda', handle: 51712, queues: Number(c.queues ?? 1), ringPageOrder: Number(c.order ?? 2), poolPages: Number(c.poolPages ?? 1024) });
      return front.prepare(Number(c.backendDomid), c.features as BlkbackFeatures);
    case 'connect':
      front!.connect(c.info as BlkbackConnectInfo);
      return { sectors: front!.sectors };
    case 'serve':
      nbd = await NbdServer.start({ socketPath: String(c.socket), exports: [{ name: 'xvda', disk: front! }], log });
      return {};
    case 'disconnect':
      await front!.disconnect(String(c.reason ?? 'test'));
      return { pending: front!.pendingCount };
    case 'stop-nbd':
      await nbd?.close();
      nbd = null;
      return {};
    // ---- hostile mode: one bad field per request ----
    case 'hostile-prepare': {
      hostile = new HostileFront(env, Number(c.backendDomid));
      const info = await hostile.prepare();
      page = hostile.grantPage(false, 0);
      return info;
    }
    case 'hostile': {
      const h = hostile!;
      const p = page!;
      const end = Number(c.sectors);
      const fills: Record<string, (v: DataView, off: number) => void> = {
        'nseg-12': h.rw(BLKIF_OP_READ, 12, 1, 0, Array.from({ length: 11 }, () => [p.ref, 0, 7] as [number, number, number])),
        'last-sect-8': h.rw(BLKIF_OP_READ, 1, 2, 0, [[p.ref, 0, 8]]),
        'past-end': h.rw(BLKIF_OP_READ, 1, 3, end - 2, [[p.ref, 0, 7]]),
        'unknown-op': h.rw(77, 1, 4, 0, [[p.ref, 0, 7]]),
        'write-ro': h.rw(BLKIF_OP_WRITE, 1, 5, 0, [[p.ref, 0, 7]]),
        'ungranted-gref': h.rw(BLKIF_OP_READ, 1, 6, 0, [[300, 0, 7]]),
        'discard-past-end': (v, off) => writeBlkifDiscard(v, off, 0, 0, 7, end, 8),
        'good-read': h.rw(BLKIF_OP_READ, 1, 8, 0, [[p.ref, 0, 7]]),
      };
      const f = fills[String(c.kind)];
      if (!f) throw new Error(`no hostile request ${String(c.kind)}`);
      return h.request(f, { timeoutMs: Number(c.timeoutMs ?? 5000) });
    }
    case 'hostile-bogus-prod':
      hostile!.bogusReqProd(Number(c.delta ?? 1000));
      return {};
    default:
      throw new Error(`unknown command ${c.cmd}`);
  }
}

serveControl(control, run, () => log(`blkfront-test ${dom.name} ready`));
