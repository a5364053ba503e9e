// An uplink that is a TAP device on the host (named in config): frames the switch floods or
// addresses to learned MACs go out through it; frames the host sends come in, read straight into
// netback's staging memory. Virtio-net headers keep GSO frames whole in both directions.
import { VIRTIO_NET_HDR_SIZE } from '../abi/virtio.js';
import { native, type Watcher } from '../native/index.js';
import { newL4Info } from '../packet/headers.js';
import { newPacketMeta } from '../packet/meta.js';
import { readVnetHdr, writeVnetHdr } from '../packet/vnet.js';
import { ip } from '../tap/ip.js';
import { checkIfName, checkNetnsName } from '../tap/names.js';
import type { SwitchFrame } from './frame.js';
import type { Uplink, UplinkSink } from './uplink.js';

const MAX_READ = VIRTIO_NET_HDR_SIZE + 0xffff;

export interface TapUplinkOptions {
  /** host interface name (<= 15 characters) */
  name: string;
  /** move it into this existing namespace (tests; otherwise it stays in netdom's) */
  netns?: string;
  mtu?: number;
}

export class TapUplink implements Uplink {
  readonly drops = { rx: 0, tx: 0 };
  private readonly out = new Uint8Array(MAX_READ);
  private readonly meta = newPacketMeta();
  private readonly l4 = newL4Info();
  private watcher: Watcher | null = null;
  private readable: (() => void) | null = null;
  private closed = false;

  private constructor(readonly name: string, private fd: number) {}

  static async open(o: TapUplinkOptions): Promise<TapUplink> {
    const name = checkIfName(o.name);
    const t = native.tapOpen(name, { vnetHdr: true });
    try {
      native.tapSetOffload(t.fd, { csum: true, tso4: true, tso6: true });
      const mtu = String(o.mtu ?? 1500);
      if (o.netns) {
        const ns = checkNetnsName(o.netns);
        await ip(['link', 'set', 'dev', t.name, 'netns', ns]);
        await ip(['-n', ns, 'link', 'set', 'dev', t.name, 'mtu', mtu, 'gso_max_size', '62000', 'up']);
      } else {
        await ip(['link', 'set', 'dev', t.name, 'mtu', mtu, 'gso_max_size', '62000', 'up']);
      }
    } catch (e) {
      native.close(t.fd);
      throw e;
    }
    return new TapUplink(t.name, t.fd);
  }

  onReadable(cb: () => void): void {
    this.readable = cb;
    this.watcher ??= new native.Watcher(this.fd, 'readable', () => {
      // Level-triggered: pause until netback has pulled what is there.
      this.watcher?.pause();
      this.readable?.();
    });
  }

  receive(sink: UplinkSink, max: number): number {
    let n = 0;
    while (n < max && !this.closed) {
      const at = sink.reserve(MAX_READ);
      if (at < 0) break;
      const r = native.readFd(this.fd, sink.mem.subarray(at, at + MAX_READ));
      if (r === null) {
        this.watcher?.resume();
        return n;
      }
      if (r < VIRTIO_NET_HDR_SIZE + 14 || readVnetHdr(sink.mem, at, this.meta) !== null) {
        this.drops.rx++;
        continue;
      }
      sink.commit(at + VIRTIO_NET_HDR_SIZE, r - VIRTIO_NET_HDR_SIZE, this.meta);
      n++;
    }
    // More may be waiting: netback comes back next round.
    this.watcher?.resume();
    return n;
  }

  transmit(f: SwitchFrame): boolean {
    if (this.closed || f.len > 0xffff) return false;
    const out = this.out;
    out.set(f.mem.subarray(f.off, f.off + f.len), VIRTIO_NET_HDR_SIZE);
    if (!writeVnetHdr(out, 0, f.meta, out, VIRTIO_NET_HDR_SIZE, f.len, this.l4)) {
      this.drops.tx++;
      return false;
    }
    if (native.writeFd(this.fd, out, VIRTIO_NET_HDR_SIZE + f.len) === null) {
      this.drops.tx++;
      return false;
    }
    return true;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.watcher?.close();
    this.watcher = null;
    native.close(this.fd);
    this.fd = -1;
  }
}
