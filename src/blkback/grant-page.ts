// One mapped grant page as blkback uses it: the CPU's view and, when it was device_mapped, the
// bus address the medium's device reaches it at.
import type { GrantMapping } from '../grant/mapper.js';

const PAGE = 4096;

export interface GrantPage {
  readonly bytes: Uint8Array;
  /** -1 when the page has no IOMMU entry (not device_mapped, or hv has no IOMMU) */
  readonly busAddr: number;
}

/** page `j` of a mapping of several refs */
export function pageOf(m: GrantMapping, j: number): GrantPage {
  return { bytes: m.bytes.subarray(j * PAGE, (j + 1) * PAGE), busAddr: m.busAddrs?.[j] ?? -1 };
}
