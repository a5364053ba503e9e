// The IOMMU's cost on the block path, in one process and one run: 4 KiB random reads at a fixed
// queue depth through the NVMe driver, the device model and VT-d translation to an image file,
// against the same reads straight from the file (RawFile, the direct-file path).
import { closeSync, ftruncateSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RawFile } from '../blkdev/raw-file.js';
import type { BlockDevice } from '../blkdev/device.js';
import { NvmeDriver } from '../drivers/nvme.js';
import { NvmeModel } from '../hw/nvme.js';
import { makeRig } from '../hw/testrig.js';

export interface BlockPathBench {
  iops: { device: number; direct: number };
  /** device path IOPS / direct path IOPS */
  ratio: number;
  translations: number;
  iotlbHitRate: number;
}

export async function runBlockPathBench(opts: { ms?: number; qd?: number; sizeMiB?: number } = {}): Promise<BlockPathBench> {
  const ms = opts.ms ?? 1000;
  const qd = opts.qd ?? 32;
  const size = (opts.sizeMiB ?? 64) * 1024 * 1024;
  const dir = mkdtempSync(join(tmpdir(), 'ringside-bench-'));
  const path = join(dir, 'disk.img');
  const fd = openSync(path, 'w+');
  ftruncateSync(fd, size);
  try {
    const rig = makeRig();
    const bar = new Uint8Array(4096);
    let raise = () => {};
    const model = new NvmeModel({ unit: rig.unit, mem: rig.mem, sid: rig.sid, bar, medium: { fd, size }, busMaster: () => true, raiseIrq: () => raise() });
    const port = rig.port(bar, () => model.kick());
    raise = () => port.raise();
    const dev = new NvmeDriver('bench', port, rig.driverMem, size, false, { depth: Math.min(qd, 63), slotPages: 1 });
    await dev.start();
    const raw = await RawFile.open(path);
    const direct = await randread(raw, size, qd, ms);
    const device = await randread(dev, size, qd, ms);
    await dev.close();
    await raw.close();
    const s = rig.unit.stats;
    return { iops: { device, direct }, ratio: device / direct, translations: s.translations, iotlbHitRate: s.iotlbHits / Math.max(1, s.iotlbHits + s.iotlbMisses) };
  } finally {
    closeSync(fd);
    rmSync(dir, { recursive: true, force: true });
  }
}

function randread(dev: BlockDevice, size: number, qd: number, ms: number): Promise<number> {
  const blocks = Math.floor(size / 4096);
  let done = 0;
  let inflight = 0;
  const end = performance.now() + ms;
  const start = performance.now();
  return new Promise((resolve, reject) => {
    const bufs = Array.from({ length: qd }, () => new Uint8Array(4096));
    const issue = (i: number): void => {
      if (performance.now() >= end) {
        if (--inflight === 0) resolve(done / ((performance.now() - start) / 1000));
        return;
      }
      dev.read(bufs[i], 0, 4096, Math.floor(Math.random() * blocks) * 4096, (err) => {
        if (err) return reject(err);
        done++;
        // the direct path completes inline on page-cache hits: do not recurse
        queueMicrotask(() => issue(i));
      });
    };
    for (let i = 0; i < qd; i++) {
      inflight++;
      issue(i);
    }
  });
}
