// A block driver domain for tests: blkback serving raw images or NVMe controllers passed through to
// it (`pci:BB:DD.F`, opened as blkdom opens them), connected with parameters the test passes over
// the control socket instead of xenstore (the XenBus glue's job in production).
import { Domain } from '../../../src/domain/runtime.js';
import type { BlockDevice } from '../../../src/blkdev/device.js';
import { BlkbackVbd } from '../../../src/blkback/vbd.js';
import { NvmeDriver } from '../../../src/drivers/nvme.js';
import type { BlkbackFeatures, BlkfrontConnectInfo } from '../../../src/blkif/features.js';
import { mediumOpener } from '../../../domains/blk/vbd-xenbus.js';
import { serveControl, type Command } from '../../block/support/control.js';
import { DirectionSwapped } from '../../../src/blkif/testing/direction-swapped.js';

const dom = await Domain.boot();
const { control } = dom.bootArgs<{ control: string }>();
const log = (l: string) => process.stderr.write(`${l}\n`);
const env = { mapper: dom.mapper, evtchn: dom.evtchn, log };
const open = mediumOpener(dom);
const vbds = new Map<number, { vbd: BlkbackVbd; dev: BlockDevice }>();
let nextVbd = 1;

async function run(c: Command): Promise<unknown> {
  switch (c.cmd) {
    case 'open': {
      let dev = await open(String(c.image), Boolean(c.readonly));
      if (c.swapDirections === true) {
        if (!(dev instanceof NvmeDriver)) throw new Error('swapDirections needs a pci: medium');
        dev = new DirectionSwapped(dev);
      }
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
      // the NVMe driver's own copy counters, beside blkback's
      const device = v.dev instanceof NvmeDriver ? { ...v.dev.stats } : null;
      return { halted: v.vbd.halted, stats: v.vbd.stats(), device };
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
