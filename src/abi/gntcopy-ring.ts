// The grant-copy ring: GNTTABOP_copy batches in a fixed binary layout in memory a domain shares
// with hv, so the data path runs no serialiser (a msgpack hypercall per batch cost netback about
// a third of a TCP stream's CPU in hv). The domain fills `count` slots, writes the count, and
// signals its kick eventfd; hv runs the slots in order, writes each one's GNTST status, and
// signals the done eventfd. One batch is in flight per ring. Every field is the caller's input
// to hv: hv reads each once, checks it as it would a hypercall argument, and a count beyond the
// ring cuts the domain off. Field widths are those of Xen's gnttab_copy_t (grant_table.h).

/** ops one batch may hold */
export const GNTCOPY_RING_SLOTS = 2048;
export const GNTCOPY_RING_HEADER = 64;
export const GNTCOPY_SLOT_SIZE = 24;
/** the shared memory's size, whole pages */
export const GNTCOPY_RING_BYTES = Math.ceil((GNTCOPY_RING_HEADER + GNTCOPY_RING_SLOTS * GNTCOPY_SLOT_SIZE) / 4096) * 4096;
/** rings one domain may hold */
export const GNTCOPY_RINGS_PER_DOMAIN = 4;

/** header: u32 count of slots in this batch */
export const RING_COUNT = 0;

/** byte offsets inside a slot (little-endian) */
export const SLOT = {
  SRC_REF: 0, // u32: a grant ref (GNTCOPY_source_gref) or the caller's own gfn
  SRC_DOM: 4, // u16
  SRC_OFF: 6, // u16
  DST_REF: 8, // u32
  DST_DOM: 12, // u16
  DST_OFF: 14, // u16
  LEN: 16, // u16
  FLAGS: 18, // u16: GNTCOPY_source_gref | GNTCOPY_dest_gref
  STATUS: 20, // i16, written by hv: a GNTST_* code
} as const;

export const slotOffset = (i: number): number => GNTCOPY_RING_HEADER + i * GNTCOPY_SLOT_SIZE;
