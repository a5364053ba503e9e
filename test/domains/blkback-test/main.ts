// A block driver domain for tests: blkback serving raw images, connected with parameters the
// test passes over the control socket instead of xenstore (the XenBus glue's job in production).
import { Domain } from '../../../src/domain/runtime.js';
import { RawFile } from '../../../src/blkdev/raw-file.js';
import { BlkbackVbd } from '../../../src/blkback/vbd.js';
import type { BlkbackFeatures, BlkfrontConnectInfo } from '../../../src/blkif/features.js';
import { serveControl, type Command } from '../../block/support/control.js';

const dom = await Domain.boot();
const { control } = dom.bootArgs<{ control: string }>();
const log = (l: string) => process.stderr.write(`${l}\n`);
const env = { mapper: dom.mapper, evtchn: dom.evtchn, log };
const vbds = new Map<number, { vbd: BlkbackVbd; dev: RawFile }>();
let nextVbd = 1;

async function run(c: Command): Promise<unknown> {
  switch (c.cmd) {
    case 'open': {
      const dev = await RawFile.open(String(c.image), { readonly: Boolean(c.readonly) });
      const vbd = new BlkbackVbd(env, {
        name: String(c.name ?? `vbd${nextVbd}`), device: dev, readonly: Boolean(c.readonly),
        features: (c.features ?? {}) as Partial<BlkbackFeatures>,
      });
      const id = nextVbd++;
      vbds.set(id, { vbd, dev });
      return { id, features: vbd.features };
    }
    case 'connect': {
      const v = vbds.get(Number(c.id))!;
      return v.vbd.connect(Number(c.frontendDomid), c.front as BlkfrontConnectInfo);
    }
    case 'status': {
      const v = vbds.get(Number(c.id))!;
      return { halted: v.vbd.halted, stats: v.vbd.stats() };
    }
    case 'disconnect': {
      const v = vbds.get(Number(c.id))!;
      await v.vbd.disconnect();
      return {};
    }
    default:
      throw new Error(`unknown command ${c.cmd}`);
  }
}

serveControl(control, run, () => log(`blkback-test ${dom.name} ready`));
