// IOMMU groups as Linux forms them: the smallest sets of devices the IOMMU can tell apart, given
// that a device behind a bridge without ACS can reach its siblings by peer-to-peer DMA without the
// IOMMU seeing it. Rules (ACS modelled as one flag meaning SV|RR|CR|UF all enabled):
//  - walking up from a device, the first bridge whose path to the root is not ACS-isolated pulls
//    the device into that bridge's group (so the bridge and everything below it share a group);
//  - once isolated, a multifunction device without ACS shares a group with its sibling functions
//    that lack ACS too;
//  - otherwise the device gets a group of its own. Numbering follows enumeration order.

import type { PciNode, Topology } from './topology.js';

export interface IommuGroup {
  id: number;
  /** Formatted BDFs, enumeration order. */
  members: string[];
}

export interface GroupMap {
  groupOf: Map<string, number>;
  groups: IommuGroup[];
}

/** True when `bridge` and every bridge above it up to the root complex have ACS. */
function acsPath(bridge: PciNode): boolean {
  for (let b: PciNode | undefined = bridge; b !== undefined; b = b.parent) if (!b.dev.acs) return false;
  return true;
}

export function computeGroups(topo: Topology): GroupMap {
  const groupOf = new Map<string, number>();
  const groups: IommuGroup[] = [];

  const assign = (n: PciNode): number => {
    const known = groupOf.get(n.key);
    if (known !== undefined) return known;
    let g: number | undefined;
    if (n.parent !== undefined && !acsPath(n.parent)) g = assign(n.parent);
    if (g === undefined && n.dev.multifunction && !n.dev.acs) {
      for (const s of topo.slotSiblings(n)) {
        if (!s.dev.acs && groupOf.has(s.key) && (s.parent === undefined || acsPath(s.parent))) {
          g = groupOf.get(s.key);
          break;
        }
      }
    }
    if (g === undefined) {
      g = groups.length;
      groups.push({ id: g, members: [] });
    }
    groupOf.set(n.key, g);
    groups[g].members.push(n.key);
    return g;
  };

  for (const n of topo.order) assign(n);
  return { groupOf, groups };
}
