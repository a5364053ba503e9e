// Block test systems on a real hv: blkback-test driver domains and blkfront-test guests as
// processes, wired the way the XenBus glue will wire them (features -> prepare -> connect ->
// connect), with the parameters carried over control sockets instead of xenstore.
import { join } from 'node:path';
import { pack } from 'msgpackr';
import { TestPlatform } from '../../support/platform.js';
import type { BlkbackConnectInfo, BlkbackFeatures, BlkfrontConnectInfo } from '../../../src/blkif/features.js';
import { Control } from './control.js';

export interface TestDomain {
  domid: number;
  name: string;
  ctl: Control;
}

export interface Guest extends TestDomain {
  socket: string;
  vbdId: number;
  backend: TestDomain;
}

export class BlockSystem {
  readonly t = new TestPlatform();
  private readonly ctls: Control[] = [];

  get dir(): string {
    return this.t.dir;
  }

  async domain(kind: 'blkback-test' | 'blkfront-test', name: string, ioFrames = 1400, grantFrames = 4): Promise<TestDomain> {
    const { result } = await this.t.dom0.call('domain_create', { name, kind, memoryMiB: 256, ioFrames, grantFrames });
    const control = join(this.t.dir, `${name}.ctl`);
    await this.t.dom0.call('domain_unpause', { domid: result.domid, bootArgs: pack({ control }) });
    const ctl = await Control.connect(control);
    this.ctls.push(ctl);
    return { domid: result.domid, name, ctl };
  }

  blkdom(name = 'blkdom'): Promise<TestDomain> {
    return this.domain('blkback-test', name, 8, 1);
  }

  /** opens `image` in `backend`, connects a (new or given) guest to it and exports it over NBD */
  async guest(
    name: string,
    backend: TestDomain,
    image: string,
    o: { readonly?: boolean; features?: Partial<BlkbackFeatures>; queues?: number; order?: number; poolPages?: number; existing?: TestDomain; open?: Record<string, unknown> } = {},
  ): Promise<Guest> {
    const g = o.existing ?? (await this.domain('blkfront-test', name));
    const vbdId = await this.attach(g, backend, image, o);
    const socket = join(this.t.dir, `${name}.nbd`);
    await g.ctl.cmd('serve', { socket });
    return { ...g, socket, vbdId, backend };
  }

  /** the XenBus handshake, by hand: returns the backend's vbd id */
  async attach(g: TestDomain, backend: TestDomain, image: string, o: { readonly?: boolean; features?: Partial<BlkbackFeatures>; queues?: number; order?: number; poolPages?: number; open?: Record<string, unknown> } = {}): Promise<number> {
    // `open` carries extra arguments for the backend's open command (e.g. swapDirections)
    const { id, features } = await backend.ctl.cmd<{ id: number; features: BlkbackFeatures }>('open', { ...o.open, image, readonly: o.readonly ?? false, features: o.features ?? {} });
    const front = await g.ctl.cmd<BlkfrontConnectInfo>('prepare', { backendDomid: backend.domid, features, queues: o.queues ?? 1, order: o.order ?? 2, poolPages: o.poolPages ?? 1024 });
    const info = await backend.ctl.cmd<BlkbackConnectInfo>('connect', { id, frontendDomid: g.domid, front });
    await g.ctl.cmd('connect', { info });
    return id;
  }

  async kill(d: TestDomain): Promise<void> {
    const rec = this.t.hv.list().find((x) => x.domid === d.domid);
    if (!rec) return;
    this.t.hv.kill(rec, 'test: SIGKILL');
    await this.t.waitEvent((e) => e.event === 'domain_died' && e.domid === d.domid);
  }

  logs(re: RegExp): string[] {
    return this.t.logs.filter((l) => re.test(l));
  }

  async close(): Promise<void> {
    for (const c of this.ctls) c.close();
    await this.t.close();
  }
}
