// An L2 learning switch between vifs and an optional uplink. A vif's address is fixed by its
// configuration: its frames must carry it as source (anything else is a spoof, dropped and
// counted), and no frame from elsewhere can move it. Addresses behind an uplink are learned, in a
// bounded table.
import { macKey } from '../packet/mac.js';
import type { SwitchFrame, SwitchPort } from './frame.js';

export const MAX_LEARNED = 4096;

export type SwitchVerdict = 'unicast' | 'flood' | 'local' | 'spoof' | 'bad';

export class NetSwitch {
  private readonly ports: SwitchPort[] = [];
  /** MAC -> port: static entries for vifs, learned entries for uplinks */
  private readonly fdb = new Map<number, SwitchPort>();
  private readonly staticMacs = new Set<number>();
  private learned = 0;

  constructor(private readonly log: (line: string) => void = () => {}) {}

  get portCount(): number {
    return this.ports.length;
  }

  addPort(port: SwitchPort): void {
    if (this.ports.includes(port)) return;
    if (port.mac !== null) {
      const owner = this.fdb.get(port.mac);
      if (owner && owner.mac === port.mac) throw new Error(`switch: MAC of ${port.portName} is already used by ${owner.portName}`);
      if (owner) this.learned--;
      this.fdb.set(port.mac, port);
      this.staticMacs.add(port.mac);
    }
    this.ports.push(port);
  }

  removePort(port: SwitchPort): void {
    const i = this.ports.indexOf(port);
    if (i < 0) return;
    this.ports.splice(i, 1);
    for (const [mac, p] of this.fdb) {
      if (p !== port) continue;
      this.fdb.delete(mac);
      if (this.staticMacs.delete(mac)) continue;
      this.learned--;
    }
  }

  /** Switches one frame that arrived on `from`. */
  input(from: SwitchPort, f: SwitchFrame): SwitchVerdict {
    const st = from.stats;
    if (f.len < 14) {
      st.badFrames++;
      return 'bad';
    }
    const m = f.mem;
    const o = f.off;
    const src = macKey(m, o + 6);
    if (from.mac !== null && src !== from.mac) {
      st.spoofDrops++;
      return 'spoof';
    }
    if ((m[o + 6] & 1) !== 0) {
      st.badFrames++;
      return 'bad';
    }
    st.inFrames++;
    st.inBytes += f.len;
    if (from.mac === null) this.learn(src, from);
    if ((m[o] & 1) === 0) {
      const to = this.fdb.get(macKey(m, o));
      if (to !== undefined) {
        if (to === from) return 'local';
        this.send(to, f);
        return 'unicast';
      }
    }
    const ports = this.ports;
    for (let i = 0; i < ports.length; i++) if (ports[i] !== from) this.send(ports[i], f);
    return 'flood';
  }

  private send(to: SwitchPort, f: SwitchFrame): void {
    to.stats.outFrames++;
    to.stats.outBytes += f.len;
    to.deliver(f);
  }

  private learn(mac: number, port: SwitchPort): void {
    if (this.staticMacs.has(mac)) return; // an uplink cannot take over a vif's address
    const cur = this.fdb.get(mac);
    if (cur === port) return;
    if (cur === undefined) {
      if (this.learned >= MAX_LEARNED) return;
      this.learned++;
    }
    this.fdb.set(mac, port);
  }

  /** for diagnostics: which port a MAC is bound to */
  lookup(mac: number): SwitchPort | undefined {
    return this.fdb.get(mac);
  }
}
