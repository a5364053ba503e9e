// Register page and descriptor layout of the emulated NIC, shared by the device model
// (iommu/devices/nic.ts) and the driver (src/drivers/nic.ts). One transmit and one receive ring
// of 16-byte descriptors in the owner's memory, head/tail registers as on e1000-class NICs: the
// driver owns [tail, head) and the device [head, tail). Each descriptor is one whole frame.

export const NIC_BAR_SIZE = 4096;

export const NIC_REG = {
  CTRL: 0x00, // EN bit 0
  STATUS: 0x04, // LINK_UP bit 0, FATAL bit 1 (device-written)
  MAC_LO: 0x08, // bytes 0-3 of the MAC (device-written)
  MAC_HI: 0x0c, // bytes 4-5
  TX_BASE: 0x10, // u64 IOVA, 16-byte aligned
  TX_SIZE: 0x18, // entries, 2..NIC_MAX_RING
  TX_TAIL: 0x1c, // driver: index after the last descriptor it filled
  TX_HEAD: 0x20, // device: next descriptor it will send
  RX_BASE: 0x28,
  RX_SIZE: 0x30,
  RX_TAIL: 0x34, // driver: index after the last buffer it posted
  RX_HEAD: 0x38, // device: next buffer it will fill
  RX_FRAMES: 0x40,
  TX_FRAMES: 0x44,
  RX_DROPS: 0x48, // frames the wire brought that found no buffer or were too long
  TX_DROPS: 0x4c, // frames the wire refused
  FAULTS: 0x50,
  LAST_FAULT: 0x54,
  LAST_FAULT_IOVA: 0x58, // u64
  FATAL_REASON: 0x60,
} as const;

export const NIC_CTRL_EN = 1;
export const NIC_STATUS_LINK = 1;
export const NIC_STATUS_FATAL = 2;
export const NIC_MAX_RING = 4096;
/** Largest frame a descriptor may carry (no TSO on this NIC). */
export const NIC_MAX_FRAME = 9216;

export const NIC_FATAL = { NONE: 0, BAD_RING_CONFIG: 1, BAD_TX_TAIL: 2, BAD_RX_TAIL: 3, RING_FAULT: 4 } as const;

export const NIC_DESC_SIZE = 16;
export const DESC = {
  ADDR: 0, // u64 buffer IOVA
  LEN: 8, // u16: tx frame length; rx buffer size in, frame length out
  STATUS: 10, // u16 DD bit 0, ERR bit 1 (device-written)
  ERR_REASON: 12, // u16 DMA fault reason when ERR (device-written)
} as const;
export const DESC_DD = 1;
export const DESC_ERR = 2;
