// The vhost-user protocol's bytes (QEMU docs/interop/vhost-user.rst; Linux uapi vhost_types.h):
// message header, request codes, protocol features and every payload layout the backend reads or
// writes, defined once. Native endian, which is little on every host ringside runs on.

export const VHOST_USER_HDR_SIZE = 12;
export const VHOST_USER_HDR_REQUEST = 0; // u32
export const VHOST_USER_HDR_FLAGS = 4; // u32
export const VHOST_USER_HDR_SIZE_FIELD = 8; // u32: payload bytes that follow
export const VHOST_USER_VERSION = 1;
export const VHOST_USER_VERSION_MASK = 0x3;
export const VHOST_USER_REPLY = 0x4;
export const VHOST_USER_NEED_REPLY = 0x8;
/** the largest payload any request we accept carries (GET_CONFIG's 12 + 256 is the biggest) */
export const VHOST_USER_PAYLOAD_MAX = 4096;
/** descriptors one message may carry (SET_MEM_TABLE: one per region) */
export const VHOST_USER_MAX_FDS = 8;

/** frontend -> backend requests */
export enum VhostUserRequest {
  GET_FEATURES = 1,
  SET_FEATURES = 2,
  SET_OWNER = 3,
  RESET_OWNER = 4,
  SET_MEM_TABLE = 5,
  SET_LOG_BASE = 6,
  SET_LOG_FD = 7,
  SET_VRING_NUM = 8,
  SET_VRING_ADDR = 9,
  SET_VRING_BASE = 10,
  GET_VRING_BASE = 11,
  SET_VRING_KICK = 12,
  SET_VRING_CALL = 13,
  SET_VRING_ERR = 14,
  GET_PROTOCOL_FEATURES = 15,
  SET_PROTOCOL_FEATURES = 16,
  GET_QUEUE_NUM = 17,
  SET_VRING_ENABLE = 18,
  SEND_RARP = 19,
  NET_SET_MTU = 20,
  SET_BACKEND_REQ_FD = 21,
  IOTLB_MSG = 22,
  SET_VRING_ENDIAN = 23,
  GET_CONFIG = 24,
  SET_CONFIG = 25,
  CREATE_CRYPTO_SESSION = 26,
  CLOSE_CRYPTO_SESSION = 27,
  POSTCOPY_ADVISE = 28,
  POSTCOPY_LISTEN = 29,
  POSTCOPY_END = 30,
  GET_INFLIGHT_FD = 31,
  SET_INFLIGHT_FD = 32,
  GPU_SET_SOCKET = 33,
  RESET_DEVICE = 34,
  VRING_KICK = 35,
  GET_MAX_MEM_SLOTS = 36,
  ADD_MEM_REG = 37,
  REM_MEM_REG = 38,
  SET_STATUS = 39,
  GET_STATUS = 40,
}

/** protocol feature bits (GET/SET_PROTOCOL_FEATURES) */
export const VHOST_USER_PROTOCOL_F_MQ = 0;
export const VHOST_USER_PROTOCOL_F_LOG_SHMFD = 1;
export const VHOST_USER_PROTOCOL_F_RARP = 2;
export const VHOST_USER_PROTOCOL_F_REPLY_ACK = 3;
export const VHOST_USER_PROTOCOL_F_MTU = 4;
export const VHOST_USER_PROTOCOL_F_BACKEND_REQ = 5;
export const VHOST_USER_PROTOCOL_F_CROSS_ENDIAN = 6;
export const VHOST_USER_PROTOCOL_F_CONFIG = 9;
export const VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD = 12;
export const VHOST_USER_PROTOCOL_F_RESET_DEVICE = 13;
export const VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS = 15;
export const VHOST_USER_PROTOCOL_F_STATUS = 16;

/** virtio feature bit 30: the backend speaks GET/SET_PROTOCOL_FEATURES */
export const VHOST_USER_F_PROTOCOL_FEATURES = 30;

// u64 payload (features, REPLY_ACK status, and KICK/CALL/ERR's ring index + flags)
export const VHOST_USER_U64_SIZE = 8;
export const VHOST_USER_VRING_IDX_MASK = 0xff;
export const VHOST_USER_VRING_NOFD_MASK = 0x100;

// struct vhost_vring_state { u32 index; u32 num }
export const VHOST_USER_VRING_STATE_SIZE = 8;
export const VRING_STATE_INDEX = 0;
export const VRING_STATE_NUM = 4;

// struct vhost_vring_addr { u32 index; u32 flags; u64 desc, used, avail, log }
export const VHOST_USER_VRING_ADDR_SIZE = 40;
export const VRING_ADDR_INDEX = 0;
export const VRING_ADDR_FLAGS = 4;
export const VRING_ADDR_DESC = 8;
export const VRING_ADDR_USED = 16;
export const VRING_ADDR_AVAIL = 24;
export const VRING_ADDR_LOG = 32;
export const VHOST_VRING_F_LOG = 1;

// VhostUserMemoryRegion { u64 guest_phys_addr, memory_size, userspace_addr, mmap_offset }
export const VHOST_USER_MEM_REGION_SIZE = 32;
export const MEM_REGION_GPA = 0;
export const MEM_REGION_SIZE = 8;
export const MEM_REGION_UADDR = 16;
export const MEM_REGION_MMAP_OFFSET = 24;
// SET_MEM_TABLE: { u32 nregions; u32 padding; regions[nregions] }
export const VHOST_USER_MEM_TABLE_HDR = 8;
export const VHOST_MEMORY_BASELINE_NREGIONS = 8;
// ADD_MEM_REG / REM_MEM_REG: { u64 padding; region }
export const VHOST_USER_SINGLE_REGION_SIZE = 8 + VHOST_USER_MEM_REGION_SIZE;

// GET_CONFIG / SET_CONFIG: { u32 offset; u32 size; u32 flags; u8 payload[size] }
export const VHOST_USER_CONFIG_HDR_SIZE = 12;
export const CONFIG_OFFSET = 0;
export const CONFIG_SIZE = 4;
export const CONFIG_FLAGS = 8;
export const VHOST_USER_CONFIG_PAYLOAD_MAX = 256;

// GET_INFLIGHT_FD / SET_INFLIGHT_FD: { u64 mmap_size; u64 mmap_offset; u16 num_queues; u16 queue_size }
// QEMU pads the struct to 8 bytes, so the payload is 24 bytes.
export const VHOST_USER_INFLIGHT_SIZE = 24;
export const INFLIGHT_MMAP_SIZE = 0;
export const INFLIGHT_MMAP_OFFSET = 8;
export const INFLIGHT_NUM_QUEUES = 16;
export const INFLIGHT_QUEUE_SIZE = 18;

// SET_LOG_BASE: { u64 mmap_size; u64 mmap_offset } + the log's fd
export const VHOST_USER_LOG_SIZE = 16;
export const LOG_MMAP_SIZE = 0;
export const LOG_MMAP_OFFSET = 8;
/** virtio feature bit 26 (vhost's own): log every write to guest memory in the dirty log */
export const VHOST_F_LOG_ALL = 26;
/** the dirty log has one bit per page of this size, from guest-physical 0 */
export const VHOST_LOG_PAGE = 0x1000;

/**
 * The inflight region's per-queue layout for split rings (vhost-user.rst, "Inflight I/O
 * tracking"): a 16-byte header { u64 features; u16 version; u16 desc_num; u16 last_batch_head;
 * u16 used_idx } and one 16-byte DescStateSplit { u8 inflight; u8 pad[5]; u16 next; u64 counter }
 * per descriptor. The backend owns this memory's layout; QEMU only keeps it across a restart.
 */
export const INFLIGHT_Q_FEATURES = 0;
export const INFLIGHT_Q_VERSION = 8;
export const INFLIGHT_Q_DESC_NUM = 10;
export const INFLIGHT_Q_LAST_BATCH_HEAD = 12;
export const INFLIGHT_Q_USED_IDX = 14;
export const INFLIGHT_Q_DESC = 16;
export const INFLIGHT_DESC_SIZE = 16;
export const INFLIGHT_DESC_INFLIGHT = 0;
export const INFLIGHT_DESC_NEXT = 6;
export const INFLIGHT_DESC_COUNTER = 8;
export const INFLIGHT_VERSION = 1;
/** each queue's region starts 64-byte aligned */
export const inflightQueueBytes = (queueSize: number): number => (INFLIGHT_Q_DESC + INFLIGHT_DESC_SIZE * queueSize + 63) & ~63;
