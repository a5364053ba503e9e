// xen/include/public/grant_table.h facts (the DOMID_* values from xen/include/public/xen.h), defined
// once for grantor, mapper and hv.

export const GRANT_ENTRY_SIZE = 8; // grant_entry_v1: u16 flags @0, u16 domid @2, u32 frame @4
export const GRANT_ENTRIES_PER_FRAME = 512;
/** refs 0-7 are reserved (GNTTAB_RESERVED_CONSOLE 0, GNTTAB_RESERVED_XENSTORE 1) */
export const GNTTAB_NR_RESERVED_ENTRIES = 8;

export const GTF_invalid = 0;
export const GTF_permit_access = 1;
export const GTF_accept_transfer = 2;
export const GTF_transitive = 3;
export const GTF_type_mask = 3;
export const GTF_readonly = 1 << 2;
export const GTF_reading = 1 << 3;
export const GTF_writing = 1 << 4;
export const GTF_sub_page = 1 << 8;

export const GNTTABOP_map_grant_ref = 0;
export const GNTTABOP_unmap_grant_ref = 1;
export const GNTTABOP_setup_table = 2;
export const GNTTABOP_copy = 5;
export const GNTTABOP_query_size = 6;

export const GNTMAP_device_map = 1;
export const GNTMAP_host_map = 2;
export const GNTMAP_readonly = 4;

export const GNTCOPY_source_gref = 1;
export const GNTCOPY_dest_gref = 2;

export const GNTST = {
  okay: 0,
  general_error: -1,
  bad_domain: -2,
  bad_gntref: -3,
  bad_handle: -4,
  bad_virt_addr: -5,
  bad_dev_addr: -6,
  no_device_space: -7,
  permission_denied: -8,
  bad_page: -9,
  bad_copy_arg: -10,
  address_too_big: -11,
  eagain: -12,
} as const;
export type GntStatus = (typeof GNTST)[keyof typeof GNTST];

const names = new Map<number, string>(Object.entries(GNTST).map(([k, v]) => [v, k]));
export function gntstName(st: number): string {
  return names.get(st) ?? `GNTST(${st})`;
}

export type GrantRef = number;
export const DOMID_SELF = 0x7ff0;
export const DOMID_INVALID = 0x7ff4;
export const DOMID_MAX = 0x7fef;
