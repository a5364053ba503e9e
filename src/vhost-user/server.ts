// A vhost-user socket: listens at a path, serves one frontend at a time, and keeps listening
// after that frontend leaves or is cut off, so QEMU's `reconnect=` (or a restarted VM) finds the
// device again. A second frontend while one is connected is turned away.
import { rmSync } from 'node:fs';
import { native, type Watcher } from '../native/index.js';
import type { VirtioDevice } from '../virtio/device.js';
import { VhostUserBackend } from './backend.js';

export interface VhostUserServerEvents {
  log(line: string): void;
  /** a frontend connected, or left (with the reason) */
  connected?(): void;
  disconnected?(reason: string): void;
  queueStarted?(index: number): void;
}

export class VhostUserServer {
  private readonly listenFd: number;
  private readonly watcher: Watcher;
  private backend: VhostUserBackend | null = null;
  private closedFlag = false;
  private idle: (() => void) | null = null;

  /** Binds `path` (which must not exist: whoever owns the directory removes stale sockets); close() removes it. */
  constructor(
    readonly path: string,
    private readonly device: VirtioDevice,
    private readonly ev: VhostUserServerEvents,
  ) {
    this.listenFd = native.unixListen(path, 4);
    this.watcher = new native.Watcher(this.listenFd, 'readable', () => this.onConnection());
  }

  get connected(): boolean {
    return this.backend !== null;
  }

  private onConnection(): void {
    for (;;) {
      const fd = native.accept(this.listenFd);
      if (fd === null) return;
      if (this.backend || this.closedFlag) {
        this.ev.log(`${this.device.name}: vhost-user: turned away a second frontend on ${this.path}`);
        native.close(fd);
        continue;
      }
      this.ev.log(`${this.device.name}: vhost-user: frontend connected on ${this.path}`);
      this.backend = new VhostUserBackend(fd, this.device, {
        log: this.ev.log,
        queueStarted: (i) => this.ev.queueStarted?.(i),
        closed: (reason) => {
          this.backend = null;
          this.ev.log(`${this.device.name}: vhost-user: frontend gone: ${reason}`);
          this.ev.disconnected?.(reason);
          this.idle?.();
        },
      });
      this.ev.connected?.();
    }
  }

  /** Stops listening and ends the connection; resolves once what was in flight has completed. */
  close(reason = 'the backend is shutting down'): Promise<void> {
    if (this.closedFlag) return Promise.resolve();
    this.closedFlag = true;
    this.watcher.close();
    native.close(this.listenFd);
    // ours to remove: a socket file nobody listens on would only refuse the next frontend
    rmSync(this.path, { force: true });
    if (!this.backend) return Promise.resolve();
    const done = new Promise<void>((r) => (this.idle = r));
    this.backend.end(reason);
    return done;
  }
}
