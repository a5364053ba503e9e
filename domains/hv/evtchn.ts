// Event channels. hv only sets them up and tears them down; a send never passes through hv:
// each port's receiving side is an eventfd, and binding hands the sender a duplicate of the
// peer's eventfd. The eventfd counter gives Xen's pending-bit semantics for free (sends
// coalesce until the receiver drains it); masking is the receiver's business (src/evtchn).
import { native } from '../../src/native/index.js';
import type { EvtchnStatus } from '../../src/hypercall/protocol.js';
import type { DomainRecord } from './domain.js';

export interface PortState {
  state: 'unbound' | 'interdomain';
  remoteDom: number;
  remotePort: number;
  /** the eventfd this port's owner waits on */
  rxFd: number;
}

export const MAX_PORTS = 4096;

/** An event-channel hypercall refused, with the errno Xen would return (hv's side; a domain sees its own EvtchnError). */
export class EvtchnOpError extends Error {
  constructor(
    readonly code: 'EINVAL' | 'ENOSPC' | 'ESRCH' | 'EPERM',
    message: string,
  ) {
    super(message);
  }
}

type Lookup = (domid: number) => DomainRecord | undefined;
type Notify = (dom: DomainRecord, ev: { event: 'evtchn_bound'; port: number; remoteDom: number; remotePort: number } | { event: 'evtchn_unbound'; port: number }, fds: number[]) => void;

export class EvtchnService {
  constructor(
    private readonly lookup: Lookup,
    private readonly notify: Notify,
  ) {}

  allocUnbound(dom: DomainRecord, remoteDom: number): { port: number; rxFd: number } {
    if (!this.lookup(remoteDom)) throw new EvtchnOpError('ESRCH', `alloc_unbound: no domain ${remoteDom}`);
    const port = this.freePort(dom);
    const rxFd = native.eventfd();
    dom.ports.set(port, { state: 'unbound', remoteDom, remotePort: 0, rxFd });
    return { port, rxFd };
  }

  bindInterdomain(dom: DomainRecord, remoteDom: number, remotePort: number): { port: number; rxFd: number; txFd: number } {
    const remote = this.lookup(remoteDom);
    if (!remote || remote.state === 'dead') throw new EvtchnOpError('ESRCH', `bind_interdomain: no domain ${remoteDom}`);
    const rp = remote.ports.get(remotePort);
    if (!rp || rp.state !== 'unbound')
      throw new EvtchnOpError('EINVAL', `bind_interdomain: dom${remoteDom} port ${remotePort} is not an unbound port`);
    if (rp.remoteDom !== dom.domid)
      throw new EvtchnOpError('EINVAL', `bind_interdomain: dom${remoteDom} port ${remotePort} was allocated for dom${rp.remoteDom}, not dom${dom.domid}`);
    if (remote === dom && remotePort === 0) throw new EvtchnOpError('EINVAL', 'bind_interdomain: bad port');
    const port = this.freePort(dom);
    const rxFd = native.eventfd();
    dom.ports.set(port, { state: 'interdomain', remoteDom, remotePort, rxFd });
    rp.state = 'interdomain';
    rp.remotePort = port;
    // The remote learns its peer and receives our eventfd as its send side.
    this.notify(remote, { event: 'evtchn_bound', port: remotePort, remoteDom: dom.domid, remotePort: port }, [rxFd]);
    return { port, rxFd, txFd: rp.rxFd };
  }

  close(dom: DomainRecord, port: number): void {
    const p = dom.ports.get(port);
    if (!p) throw new EvtchnOpError('EINVAL', `close: port ${port} is not open`);
    dom.ports.delete(port);
    native.close(p.rxFd);
    if (p.state === 'interdomain') {
      const remote = this.lookup(p.remoteDom);
      const rp = remote?.ports.get(p.remotePort);
      if (remote && rp && rp.state === 'interdomain' && rp.remotePort === port && rp.remoteDom === dom.domid) {
        // As in Xen, the surviving end falls back to unbound (for the same peer) and may be re-bound.
        rp.state = 'unbound';
        rp.remotePort = 0;
        this.notify(remote, { event: 'evtchn_unbound', port: p.remotePort }, []);
      }
    }
  }

  closeAll(dom: DomainRecord): void {
    for (const port of [...dom.ports.keys()]) this.close(dom, port);
  }

  status(dom: DomainRecord, port: number): EvtchnStatus {
    const p = dom.ports.get(port);
    if (!p) return { state: 'free', remoteDom: 0, remotePort: 0 };
    return { state: p.state, remoteDom: p.remoteDom, remotePort: p.remotePort };
  }

  private freePort(dom: DomainRecord): number {
    // Port 0 is never valid in Xen.
    for (let p = 1; p < MAX_PORTS; p++) if (!dom.ports.has(p)) return p;
    throw new EvtchnOpError('ENOSPC', `dom${dom.domid} has no free event-channel ports (max ${MAX_PORTS - 1})`);
  }
}
