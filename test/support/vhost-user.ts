// What the hostile vhost-user system tests (blkdom's disks, netdom's vifs) share: the frontends a
// test has open, hung up and waited for, and the attacks on the protocol itself, which do not
// depend on the device behind the socket.
import { VhostUserRequest as R } from '../../src/abi/vhost-user.js';
import { native } from '../../src/native/index.js';
import { Frontend, GUEST, memTable } from '../../src/vhost-user/testing/frontend.js';
import { until } from './until.js';

/** The frontends a test has open against one backend whose log `log` returns. */
export class OpenFrontends<Q extends { close(): void }> {
  private readonly open: Q[] = [];
  constructor(
    private readonly backend: string,
    private readonly log: () => string,
  ) {}

  add(q: Q): Q {
    this.open.push(q);
    return q;
  }

  private gone(): number {
    return (this.log().match(/vhost-user: frontend gone/g) ?? []).length;
  }

  /** Hangs up every frontend still open and waits until the backend has seen each go (the next would be turned away before). */
  async hangUp(): Promise<void> {
    const before = this.gone();
    const n = this.open.length;
    for (const q of this.open.splice(0)) q.close();
    await until(`${this.backend} to see ${n} frontend(s) go`, () => this.gone(), (g) => g >= before + n);
  }

  /** Closes what is open without waiting (the backend may be gone). */
  closeAll(): void {
    for (const q of this.open.splice(0)) q.close();
  }
}

/** Protocol-level attacks on the socket at `socket()`: what each does, and what the backend's log must say. */
export function protocolAttacks(socket: () => string): [string, () => Promise<void>, RegExp][] {
  return [
    ['a payload larger than any request', async () => {
      const fe = new Frontend(socket());
      fe.send(R.SET_FEATURES, new Uint8Array(8), [], undefined, 1 << 20);
      await fe.untilClosed();
      fe.close();
    }, /frontend gone: protocol error: .*1048576-byte payload/],
    ['a memory region past the end of its memfd', async () => {
      const fe = new Frontend(socket());
      const memfd = native.memfdCreate('rogue', GUEST.MEM);
      fe.send(R.SET_MEM_TABLE, memTable([{ gpa: GUEST.GPA, size: GUEST.MEM * 64, uaddr: GUEST.UADDR, off: 0 }]), [memfd]);
      native.close(memfd);
      await fe.untilClosed();
      fe.close();
    }, /frontend gone: SET_MEM_TABLE: region wants bytes/],
  ];
}
