// The PCI device tree of the platform: each function with its upstream bridge and its children,
// built from host.cfg. Everything else in the platform asks topology questions here.

import { formatBdf, type Bdf } from '../../src/config/bdf.js';
import type { HostConfig, HostDevice } from '../../src/config/host.js';

export interface PciNode {
  readonly key: string; // formatted BDF, the map key everywhere
  readonly dev: HostDevice;
  parent: PciNode | undefined;
  readonly children: PciNode[];
}

export function isBridge(d: HostDevice): boolean {
  return d.type === 'root-port' || d.type === 'pci-bridge';
}

/** Only endpoints may leave the platform; bridges, ports and the host bridge never do. */
export function isEndpoint(d: Pick<HostDevice, 'type'>): boolean {
  return d.type === 'nvme' || d.type === 'nic';
}

export function bdfOrder(a: Bdf, b: Bdf): number {
  return a.domain - b.domain || a.bus - b.bus || a.dev - b.dev || a.fn - b.fn;
}

export class Topology {
  readonly nodes = new Map<string, PciNode>();
  /** Depth-first from the root complex in BDF order: Linux's enumeration order. */
  readonly order: PciNode[] = [];
  /** Parents named in host.cfg that do not exist; host.cfg's parser refuses these, but a hand-built config may not. */
  readonly orphans: string[] = [];

  constructor(host: HostConfig) {
    const sorted = [...host.devices].sort((a, b) => bdfOrder(a.bdf, b.bdf));
    for (const dev of sorted) this.nodes.set(formatBdf(dev.bdf), { key: formatBdf(dev.bdf), dev, parent: undefined, children: [] });
    const roots: PciNode[] = [];
    for (const n of this.nodes.values()) {
      const p = n.dev.parent === undefined ? undefined : this.nodes.get(formatBdf(n.dev.parent));
      if (n.dev.parent !== undefined && (p === undefined || !isBridge(p.dev))) this.orphans.push(n.key);
      if (p !== undefined && isBridge(p.dev)) {
        n.parent = p;
        p.children.push(n);
      } else roots.push(n);
    }
    const seen = new Set<PciNode>();
    const visit = (n: PciNode): void => {
      if (seen.has(n)) return;
      seen.add(n);
      this.order.push(n);
      for (const c of n.children) visit(c);
    };
    roots.forEach(visit);
  }

  get(bdf: Bdf | string): PciNode | undefined {
    return this.nodes.get(typeof bdf === 'string' ? bdf : formatBdf(bdf));
  }

  /** Other functions of the same slot (bus:dev). */
  slotSiblings(n: PciNode): PciNode[] {
    const b = n.dev.bdf;
    return this.order.filter((o) => o !== n && o.dev.bdf.domain === b.domain && o.dev.bdf.bus === b.bus && o.dev.bdf.dev === b.dev);
  }

  /** Everything a secondary bus reset of `n`'s bus would hit: all devices below its parent bridge. */
  busResetScope(n: PciNode): PciNode[] {
    if (n.parent === undefined) return [];
    const out: PciNode[] = [];
    const walk = (p: PciNode): void => {
      for (const c of p.children) {
        out.push(c);
        walk(c);
      }
    };
    walk(n.parent);
    return out;
  }
}
