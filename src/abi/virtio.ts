// virtio 1.x wire layouts (Linux uapi virtio_ring.h, virtio_config.h, virtio_blk.h; the virtio
// spec, "Split Virtqueues" and "Block Device"): the one definition of a split virtqueue's bytes and
// of virtio-blk's requests and config space, kept apart from the queue logic (src/virtio/) as
// blkif.ts is kept apart from blkback. Every field is little-endian (VERSION_1).

// ---- device-independent feature bits ----
export const VIRTIO_F_NOTIFY_ON_EMPTY = 24;
export const VIRTIO_F_ANY_LAYOUT = 27;
export const VIRTIO_RING_F_INDIRECT_DESC = 28;
export const VIRTIO_RING_F_EVENT_IDX = 29;
export const VIRTIO_F_VERSION_1 = 32;
export const VIRTIO_F_ACCESS_PLATFORM = 33;
export const VIRTIO_F_RING_PACKED = 34;

/** device status bits (SET_STATUS) */
export const VIRTIO_CONFIG_S_ACKNOWLEDGE = 1;
export const VIRTIO_CONFIG_S_DRIVER = 2;
export const VIRTIO_CONFIG_S_DRIVER_OK = 4;
export const VIRTIO_CONFIG_S_FEATURES_OK = 8;
export const VIRTIO_CONFIG_S_NEEDS_RESET = 0x40;
export const VIRTIO_CONFIG_S_FAILED = 0x80;

/** a split queue holds at most this many descriptors (and its size is a power of two) */
export const VIRTQ_MAX_SIZE = 32768;

// ---- struct vring_desc (16 bytes, 16-aligned table) ----
export const VIRTQ_DESC_SIZE = 16;
export const VIRTQ_DESC_ADDR = 0; // le64
export const VIRTQ_DESC_LEN = 8; // le32
export const VIRTQ_DESC_FLAGS = 12; // le16
export const VIRTQ_DESC_NEXT = 14; // le16
export const VIRTQ_DESC_F_NEXT = 1;
export const VIRTQ_DESC_F_WRITE = 2;
export const VIRTQ_DESC_F_INDIRECT = 4;

// ---- struct vring_avail: flags, idx, ring[N], used_event (2-aligned) ----
export const VIRTQ_AVAIL_FLAGS = 0;
export const VIRTQ_AVAIL_IDX = 2;
export const VIRTQ_AVAIL_RING = 4;
export const VIRTQ_AVAIL_F_NO_INTERRUPT = 1;
export const availSize = (n: number): number => 6 + 2 * n;
/** byte offset of used_event (EVENT_IDX): the used index after which the driver wants an interrupt */
export const availUsedEvent = (n: number): number => 4 + 2 * n;

// ---- struct vring_used: flags, idx, ring[N] of {le32 id, le32 len}, avail_event (4-aligned) ----
export const VIRTQ_USED_FLAGS = 0;
export const VIRTQ_USED_IDX = 2;
export const VIRTQ_USED_RING = 4;
export const VIRTQ_USED_ELEM_SIZE = 8;
export const VIRTQ_USED_ELEM_ID = 0;
export const VIRTQ_USED_ELEM_LEN = 4;
export const VIRTQ_USED_F_NO_NOTIFY = 1;
export const usedSize = (n: number): number => 6 + 8 * n;
/** byte offset of avail_event (EVENT_IDX): the avail index after which the device wants a kick */
export const usedAvailEvent = (n: number): number => 4 + 8 * n;

/**
 * vring_need_event: whether moving an index from `old` to `next` crossed `event`, all mod 2^16.
 * The one rule EVENT_IDX suppression rests on, for kicks and interrupts alike.
 */
export function vringNeedEvent(event: number, next: number, old: number): boolean {
  return ((next - event - 1) & 0xffff) < ((next - old) & 0xffff);
}

// ---- virtio-blk (device id 2) ----
export const VIRTIO_ID_BLOCK = 2;
export const VIRTIO_BLK_F_SIZE_MAX = 1;
export const VIRTIO_BLK_F_SEG_MAX = 2;
export const VIRTIO_BLK_F_GEOMETRY = 4;
export const VIRTIO_BLK_F_RO = 5;
export const VIRTIO_BLK_F_BLK_SIZE = 6;
export const VIRTIO_BLK_F_FLUSH = 9;
export const VIRTIO_BLK_F_TOPOLOGY = 10;
export const VIRTIO_BLK_F_CONFIG_WCE = 11;
export const VIRTIO_BLK_F_MQ = 12;
export const VIRTIO_BLK_F_DISCARD = 13;
export const VIRTIO_BLK_F_WRITE_ZEROES = 14;

export const VIRTIO_BLK_T_IN = 0;
export const VIRTIO_BLK_T_OUT = 1;
export const VIRTIO_BLK_T_FLUSH = 4;
export const VIRTIO_BLK_T_GET_ID = 8;
export const VIRTIO_BLK_T_DISCARD = 11;
export const VIRTIO_BLK_T_WRITE_ZEROES = 13;

export const VIRTIO_BLK_S_OK = 0;
export const VIRTIO_BLK_S_IOERR = 1;
export const VIRTIO_BLK_S_UNSUPP = 2;

/** virtio-blk sectors are 512 bytes whatever blk_size says */
export const VIRTIO_BLK_SECTOR_SIZE = 512;
export const VIRTIO_BLK_ID_BYTES = 20;

// struct virtio_blk_outhdr (the request's first 16 readable bytes)
export const VIRTIO_BLK_OUTHDR_SIZE = 16;
export const VIRTIO_BLK_OUTHDR_TYPE = 0; // le32
export const VIRTIO_BLK_OUTHDR_IOPRIO = 4; // le32
export const VIRTIO_BLK_OUTHDR_SECTOR = 8; // le64

// struct virtio_blk_discard_write_zeroes (one per range in a DISCARD or WRITE_ZEROES payload)
export const VIRTIO_BLK_DWZ_SIZE = 16;
export const VIRTIO_BLK_DWZ_SECTOR = 0; // le64
export const VIRTIO_BLK_DWZ_NUM_SECTORS = 8; // le32
export const VIRTIO_BLK_DWZ_FLAGS = 12; // le32
export const VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP = 1;

// struct virtio_blk_config (what GET_CONFIG returns; the driver reads only what it negotiated)
export const VIRTIO_BLK_CFG_CAPACITY = 0; // le64, 512-byte sectors
export const VIRTIO_BLK_CFG_SIZE_MAX = 8; // le32
export const VIRTIO_BLK_CFG_SEG_MAX = 12; // le32
export const VIRTIO_BLK_CFG_GEOMETRY = 16; // le16 cylinders, u8 heads, u8 sectors
export const VIRTIO_BLK_CFG_BLK_SIZE = 20; // le32
export const VIRTIO_BLK_CFG_PHYS_BLOCK_EXP = 24; // u8
export const VIRTIO_BLK_CFG_ALIGNMENT_OFFSET = 25; // u8
export const VIRTIO_BLK_CFG_MIN_IO_SIZE = 26; // le16
export const VIRTIO_BLK_CFG_OPT_IO_SIZE = 28; // le32
export const VIRTIO_BLK_CFG_WRITEBACK = 32; // u8
export const VIRTIO_BLK_CFG_NUM_QUEUES = 34; // le16
export const VIRTIO_BLK_CFG_MAX_DISCARD_SECTORS = 36; // le32
export const VIRTIO_BLK_CFG_MAX_DISCARD_SEG = 40; // le32
export const VIRTIO_BLK_CFG_DISCARD_SECTOR_ALIGNMENT = 44; // le32
export const VIRTIO_BLK_CFG_MAX_WRITE_ZEROES_SECTORS = 48; // le32
export const VIRTIO_BLK_CFG_MAX_WRITE_ZEROES_SEG = 52; // le32
export const VIRTIO_BLK_CFG_WRITE_ZEROES_MAY_UNMAP = 56; // u8
export const VIRTIO_BLK_CONFIG_SIZE = 60;


/** a feature bit as the u64 mask vhost-user and the virtio transports carry */
export const bit = (n: number): bigint => 1n << BigInt(n);

// ---- virtio-net (virtio 1.x, 5.1) ----
/** the driver may send frames with a partial checksum (NEEDS_CSUM) */
export const VIRTIO_NET_F_CSUM = 0;
/** the driver takes frames with a partial checksum */
export const VIRTIO_NET_F_GUEST_CSUM = 1;
export const VIRTIO_NET_F_GUEST_TSO4 = 7;
export const VIRTIO_NET_F_GUEST_TSO6 = 8;
export const VIRTIO_NET_F_HOST_TSO4 = 11;
export const VIRTIO_NET_F_HOST_TSO6 = 12;
export const VIRTIO_NET_F_MTU = 3;
export const VIRTIO_NET_F_MAC = 5;
export const VIRTIO_NET_F_MRG_RXBUF = 15;
export const VIRTIO_NET_F_STATUS = 16;
/** queue 2n receives, 2n+1 transmits */
export const VIRTIO_NET_RXQ = 0;
export const VIRTIO_NET_TXQ = 1;
/** struct virtio_net_config */
export const VIRTIO_NET_CFG_MAC = 0;
export const VIRTIO_NET_CFG_STATUS = 6;
export const VIRTIO_NET_CFG_MAX_PAIRS = 8;
export const VIRTIO_NET_CFG_MTU = 10;
export const VIRTIO_NET_CONFIG_SIZE = 12;
export const VIRTIO_NET_S_LINK_UP = 1;
/** struct virtio_net_hdr_v1: the header every frame carries once VERSION_1 is negotiated */
export const VIRTIO_NET_HDR_SIZE = 12;
export const VIRTIO_NET_HDR_FLAGS = 0;
export const VIRTIO_NET_HDR_GSO_TYPE = 1;
export const VIRTIO_NET_HDR_NUM_BUFFERS = 10;
export const VIRTIO_NET_HDR_F_NEEDS_CSUM = 1;
export const VIRTIO_NET_HDR_F_DATA_VALID = 2;
export const VIRTIO_NET_HDR_GSO_NONE = 0;
export const VIRTIO_NET_HDR_GSO_TCPV4 = 1;
export const VIRTIO_NET_HDR_GSO_UDP = 3;
export const VIRTIO_NET_HDR_GSO_TCPV6 = 4;
export const VIRTIO_NET_HDR_GSO_ECN = 0x80;
