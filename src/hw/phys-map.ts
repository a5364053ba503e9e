// The host-physical address space hv programs into the IOMMU and hw's devices reach through it.
// Every domain's I/O frame has an address, pa = domid << 24 | gfn << 12 (4096 frames, 16 MiB, per
// domain; the highest domid 0x7fef keeps every address below 2^39, so both 3- and 4-level tables
// can map it). The slots from 0x7ff0 up are hv's own memory, one memfd both processes map: IOMMU
// tables (0x7ff0..0x7ffd) and the pages standing in for firmware-reserved (RMRR) regions (0x7ffe).
// No domain is ever handed those frames.
export const PAGE = 4096;
export const SLOT = 1 << 24;
export const FRAMES_PER_SLOT = SLOT / PAGE;
export const HV_TABLE_SLOT = 0x7ff0;
export const HV_TABLE_SLOTS = 14;
export const HV_FIRMWARE_SLOT = 0x7ffe;
/** The memfd behind the table and firmware slots: sparse, so untouched pages cost nothing. */
export const HV_AREA_BASE = HV_TABLE_SLOT * SLOT;
export const HV_AREA_BYTES = (HV_FIRMWARE_SLOT + 1 - HV_TABLE_SLOT) * SLOT;
export const PHYS_LIMIT = 0x8000 * SLOT;

export function framePa(domid: number, gfn: number): number {
  return domid * SLOT + gfn * PAGE;
}
