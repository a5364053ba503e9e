// A vif: one guest network interface as netback serves it, and a port of the switch. It owns
// its queues; anything the guest does wrong cuts off this vif alone, with the reason logged.
import { parseL4, newL4Info } from '../packet/headers.js';
import { macKey, parseMacBytes } from '../packet/mac.js';
import type { NetifFrontendFeatures, VifConnectParams } from '../netif/params.js';
import { newPortStats, type PortStats, type SwitchFrame, type SwitchPort } from '../netswitch/frame.js';
import type { CopyBatch } from './copybatch.js';
import { TxCredit } from './credit.js';
import type { XenvifQueue } from './queue.js';
import { newVifStats, type VifStats } from './stats.js';

export interface VifHost {
  rxOps: CopyBatch;
  now(): number;
  log(line: string): void;
  /** the vif must go: off the switch, no more work, rings released after the current round */
  retire(vif: Vif): void;
}

const l4 = newL4Info();

export class Vif implements SwitchPort {
  readonly portName: string;
  readonly mac: number;
  readonly macText: string;
  readonly stats: PortStats = newPortStats();
  readonly vstats: VifStats = newVifStats();
  readonly queues: XenvifQueue[] = [];
  readonly features: NetifFrontendFeatures;
  readonly frontendDomid: number;
  readonly credit: TxCredit;
  creditTimer: NodeJS.Timeout | null = null;
  dead = false;
  /** why the vif was cut off (null: still up, or disconnected cleanly) */
  fatalReason: string | null = null;
  private readonly onFatal: ((reason: string) => void)[] = [];

  constructor(
    readonly params: VifConnectParams,
    private readonly host: VifHost,
  ) {
    this.portName = params.name;
    this.macText = params.mac;
    this.mac = macKey(parseMacBytes(params.mac), 0);
    this.features = { ...params.features };
    this.frontendDomid = params.frontendDomid;
    this.credit = new TxCredit(params.rate, host.now());
  }

  log(line: string): void {
    this.host.log(`netback: ${this.portName}: ${line}`);
  }

  /** runs once if the vif is cut off, with the reason (the XenBus glue moves the backend to Closing) */
  onCutOff(cb: (reason: string) => void): void {
    this.onFatal.push(cb);
  }

  /** Cuts the vif off for a protocol violation. Idempotent; the first reason sticks. */
  fatal(reason: string): void {
    if (this.dead) return;
    this.dead = true;
    this.fatalReason = reason;
    this.log(`cut off: ${reason}`);
    this.host.retire(this);
    for (const cb of this.onFatal) {
      try {
        cb(reason);
      } catch {
        /* a listener's failure must not stop the data path */
      }
    }
  }

  deliver(f: SwitchFrame): void {
    if (this.dead) return;
    const qs = this.queues;
    let q = qs[0];
    if (qs.length > 1) {
      parseL4(f.mem, f.off, f.len, l4);
      q = qs[l4.hash % qs.length];
    }
    q.deliver(f, this.host.rxOps, this.host.now());
  }
}
