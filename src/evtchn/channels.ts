// Event channels as a domain sees them. Each port has an eventfd we wait on (hv created it) and,
// once bound, the peer's eventfd we signal: sending never involves hv. Xen's semantics on top:
// the eventfd counter is the pending bit (sends coalesce), a masked port keeps its pending bit
// and is delivered on unmask, and a port is masked while its handler runs.
import type { HypercallClient } from '../hypercall/client.js';
import { safeClose } from '../hypercall/channel.js';
import type { HvEvent } from '../hypercall/protocol.js';
import { native, type Watcher } from '../native/index.js';

export class EvtchnError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'EvtchnError';
  }
}

interface Port {
  port: number;
  rxFd: number;
  txFd: number;
  remoteDom: number;
  remotePort: number;
  watcher: Watcher;
  masked: boolean;
  pending: boolean;
  handler: (() => void) | null;
  deliveries: number;
  sends: number;
}

export class EventChannels {
  private readonly ports = new Map<number, Port>();

  constructor(private readonly hc: HypercallClient) {
    hc.onEvent((ev, fds) => this.onHvEvent(ev, fds));
  }

  async allocUnbound(remoteDom: number): Promise<number> {
    const { result, fds } = await this.hc.call('evtchn_alloc_unbound', { remoteDom });
    this.add(result.port, fds[0], -1, remoteDom, 0);
    return result.port;
  }

  async bindInterdomain(remoteDom: number, remotePort: number): Promise<number> {
    const { result, fds } = await this.hc.call('evtchn_bind_interdomain', { remoteDom, remotePort });
    this.add(result.port, fds[0], fds[1], remoteDom, remotePort);
    return result.port;
  }

  /** Sets the function run when an event arrives on `port`. */
  on(port: number, handler: () => void): void {
    this.get(port).handler = handler;
  }

  /** EVTCHNOP_send. On an unbound port the event goes nowhere, as in Xen. */
  notify(port: number): void {
    const p = this.ports.get(port);
    if (!p) throw new EvtchnError('EINVAL', `send on port ${port}: port is not open`);
    if (p.txFd >= 0) {
      p.sends++;
      native.eventfdSignal(p.txFd);
    }
  }

  mask(port: number): void {
    this.get(port).masked = true;
  }

  unmask(port: number): void {
    const p = this.get(port);
    p.masked = false;
    // Drain anything that arrived while masked: the event is delivered now, not lost.
    if (native.eventfdRead(p.rxFd) > 0) p.pending = true;
    if (p.pending) this.deliver(p);
  }

  isPending(port: number): boolean {
    const p = this.get(port);
    return p.pending;
  }

  isBound(port: number): boolean {
    return (this.ports.get(port)?.txFd ?? -1) >= 0;
  }

  stats(port: number): { deliveries: number; sends: number } {
    const p = this.get(port);
    return { deliveries: p.deliveries, sends: p.sends };
  }

  async close(port: number): Promise<void> {
    const p = this.get(port);
    this.drop(p);
    await this.hc.call('evtchn_close', { port });
  }

  /** Releases all local state without telling hv (the domain is going away). */
  closeAllLocal(): void {
    for (const p of [...this.ports.values()]) this.drop(p);
  }

  private get(port: number): Port {
    const p = this.ports.get(port);
    if (!p) throw new EvtchnError('EINVAL', `port ${port} is not open`);
    return p;
  }

  private add(port: number, rxFd: number, txFd: number, remoteDom: number, remotePort: number): void {
    const p: Port = {
      port, rxFd, txFd, remoteDom, remotePort, masked: false, pending: false, handler: null, deliveries: 0, sends: 0,
      watcher: new native.Watcher(rxFd, 'eventfd', () => {
        p.pending = true;
        if (!p.masked) this.deliver(p);
      }),
    };
    this.ports.set(port, p);
  }

  private deliver(p: Port): void {
    p.pending = false;
    p.deliveries++;
    if (!p.handler) return;
    p.masked = true;
    try {
      p.handler();
    } finally {
      if (this.ports.get(p.port) === p) {
        p.masked = false;
        if (p.pending) setImmediate(() => this.ports.get(p.port) === p && !p.masked && p.pending && this.deliver(p));
      }
    }
  }

  private drop(p: Port): void {
    this.ports.delete(p.port);
    p.watcher.close();
    safeClose(p.rxFd);
    if (p.txFd >= 0) safeClose(p.txFd);
  }

  private onHvEvent(ev: HvEvent, fds: number[]): void {
    if (ev.event === 'evtchn_bound') {
      const p = this.ports.get(ev.port);
      if (!p || fds.length !== 1) {
        for (const f of fds) safeClose(f);
        return;
      }
      if (p.txFd >= 0) safeClose(p.txFd);
      p.txFd = fds[0];
      p.remoteDom = ev.remoteDom;
      p.remotePort = ev.remotePort;
    } else if (ev.event === 'evtchn_unbound') {
      const p = this.ports.get(ev.port);
      if (p && p.txFd >= 0) {
        safeClose(p.txFd);
        p.txFd = -1;
      }
    }
  }
}
