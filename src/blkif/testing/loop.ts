// A blkfront and a blkback wired together in one process over FakeXen, on a temp raw image.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RawFile } from '../../blkdev/raw-file.js';
import { BlkbackVbd } from '../../blkback/vbd.js';
import { Blkfront, type BlkfrontOptions } from '../../blkfront/device.js';
import type { BlkbackFeatures } from '../features.js';
import { FakeXen, type FakeDomain } from '../../domain/testing/fake-xen.js';

export interface LoopOptions {
  sizeBytes?: number;
  readonly?: boolean;
  features?: Partial<BlkbackFeatures>;
  front?: Partial<BlkfrontOptions>;
  frontFrames?: number;
  maxPersistentGrants?: number;
}

export class Loop {
  readonly xen = new FakeXen();
  readonly dir = mkdtempSync(join(tmpdir(), 'ringside-blk-'));
  readonly image = join(this.dir, 'disk.img');
  back!: FakeDomain;
  front!: FakeDomain;
  dev!: RawFile;
  vbd!: BlkbackVbd;
  bf!: Blkfront;
  private backDomid = 1;

  static async start(o: LoopOptions = {}): Promise<Loop> {
    const l = new Loop();
    writeFileSync(l.image, Buffer.alloc(0));
    const { truncateSync } = await import('node:fs');
    truncateSync(l.image, o.sizeBytes ?? 16 << 20);
    l.front = l.xen.domain(100, o.frontFrames ?? 2400);
    l.bf = new Blkfront(l.front, { name: 'xvda', handle: 51712, ...o.front });
    await l.attachBackend(o);
    return l;
  }

  /** a (new) backend domain serving the same image, and the frontend connected to it */
  async attachBackend(o: LoopOptions = {}): Promise<void> {
    this.back = this.xen.domain(this.backDomid++, 4);
    this.dev = await RawFile.open(this.image, { readonly: o.readonly });
    this.vbd = new BlkbackVbd(this.back, {
      name: 'vbd', device: this.dev, readonly: o.readonly, features: o.features, maxPersistentGrants: o.maxPersistentGrants,
    });
    const fi = await this.bf.prepare(this.back.domid, this.vbd.features);
    const ci = await this.vbd.connect(this.front.domid, fi);
    this.bf.connect(ci);
  }

  async close(): Promise<void> {
    await this.bf.close();
    await this.vbd.disconnect();
    await this.dev.close();
    this.xen.close();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export function pattern(len: number, seed: number): Uint8Array {
  const b = new Uint8Array(len);
  let x = seed * 2654435761 + 1;
  for (let i = 0; i < len; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}
