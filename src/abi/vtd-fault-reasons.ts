// VT-d DMA-remapping fault reasons (legacy mode) with the words the platform shows users.

export const FR_ROOT_NOT_PRESENT = 0x1;
export const FR_CONTEXT_NOT_PRESENT = 0x2;
export const FR_CONTEXT_INVALID = 0x3;
export const FR_BEYOND_MGAW = 0x4;
export const FR_WRITE = 0x5;
export const FR_READ = 0x6;
export const FR_PAGING_ENTRY_INVALID = 0x7;
export const FR_ROOT_TABLE_INVALID = 0x8;
export const FR_CONTEXT_TABLE_INVALID = 0x9;
export const FR_ROOT_RESERVED = 0xa;
export const FR_CONTEXT_RESERVED = 0xb;
export const FR_PAGING_RESERVED = 0xc;
export const FR_TT_BLOCKED = 0xd;

const TEXT: Record<number, string> = {
  0x1: 'root entry not present',
  0x2: 'context entry not present',
  0x3: 'invalid context entry (unsupported address width or translation type)',
  0x4: 'address beyond the domain address width',
  0x5: 'write to a page without write permission',
  0x6: 'read from a page without read permission',
  0x7: 'second-level page-table pointer invalid',
  0x8: 'root table address invalid',
  0x9: 'context table pointer invalid',
  0xa: 'reserved bits set in root entry',
  0xb: 'reserved bits set in context entry',
  0xc: 'reserved bits set in second-level paging entry',
  0xd: 'request blocked by the context entry translation type',
};

export function faultReasonText(reason: number): string {
  return TEXT[reason] ?? `unknown fault reason 0x${reason.toString(16)}`;
}

/**
 * Qualified faults are those found after a present, valid context entry; only they can be
 * suppressed by the context entry's FPD bit (the others happen before FPD is known).
 */
export function isQualifiedFault(reason: number): boolean {
  return reason === FR_BEYOND_MGAW || reason === FR_WRITE || reason === FR_READ || reason === FR_PAGING_ENTRY_INVALID || reason === FR_PAGING_RESERVED || reason === FR_TT_BLOCKED;
}
