// The XenBus side every vhost-user device end in a driver domain shares (blkdom's VM disks,
// netdom's VM vifs): the socket dom0 named, a listener on it, and a backend state that follows the
// frontend: InitWait while nobody is connected, Connected once the guest's driver starts a queue.
import { rmSync } from 'node:fs';
import { XenbusState } from '../abi/xenbus.js';
import type { VirtioDevice } from '../virtio/device.js';
import type { XenbusDevice } from '../xenbus/device.js';
import { Serial } from '../xenbus/session.js';
import { VhostUserServer } from './server.js';
import { SOCKET_KEY } from './xenstore-keys.js';

/** sun_path holds 108 bytes with its NUL */
const MAX_SOCKET_PATH = 107;

export class VhostUserEnd {
  private server: VhostUserServer | null = null;
  private readonly serial: Serial;
  private closed = false;

  constructor(
    readonly xb: XenbusDevice,
    readonly name: string,
    private readonly log: (l: string) => void,
  ) {
    this.serial = new Serial((e) => this.log(`${name}: ${e.message}`));
  }

  /** The socket dom0 named in the backend directory, or why it is unusable. */
  async socketPath(): Promise<{ path: string } | { error: string }> {
    const socket = await this.xb.tryRead(SOCKET_KEY);
    if (socket === undefined || !socket.startsWith('/') || Buffer.byteLength(socket) > MAX_SOCKET_PATH)
      return { error: `${this.xb.path}/${SOCKET_KEY} = ${JSON.stringify(socket?.slice(0, 120))}: expected an absolute socket path of at most ${MAX_SOCKET_PATH} bytes` };
    return { path: socket };
  }

  /** Listens on `socket` for the VM's frontend (throws when it cannot), then offers itself at InitWait. */
  async listen(socket: string, device: VirtioDevice, keys: Record<string, string> = {}): Promise<void> {
    // a socket left by our previous instance: the directory is ours alone (dom0 made it for us)
    rmSync(socket, { force: true });
    this.server = new VhostUserServer(socket, device, {
      log: this.log,
      queueStarted: () => this.serial.run(() => this.setState(XenbusState.Connected)),
      disconnected: () => this.serial.run(() => this.setState(XenbusState.InitWait)),
    });
    await this.xb.writeKeys({ ...keys, state: XenbusState.InitWait });
  }

  private async setState(s: XenbusState): Promise<void> {
    if (this.closed) return;
    if ((await this.xb.state()) !== s) await this.xb.switchState(s);
  }

  /** Tells dom0 why in `error` and closes this device only. */
  async fatal(reason: string): Promise<void> {
    this.log(`${this.name}: ${reason}`);
    await this.server?.close(reason).catch(() => undefined);
    await this.xb.writeKeys({ error: reason.slice(0, 1024), state: XenbusState.Closing }).catch(() => undefined);
  }

  async close(reason: string): Promise<void> {
    this.closed = true;
    await this.serial.idle();
    await this.server?.close(reason);
    await this.xb.close();
  }
}
