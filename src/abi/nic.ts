// Register page and descriptor layout of the emulated NIC, shared by the device model
// (src/hw/nic.ts) and the driver (src/drivers/nic.ts). One transmit and one receive ring
// of 16-byte descriptors in the owner's memory, head/tail registers as on e1000-class NICs: the
// driver owns [tail, head) and the device [head, tail). Each descriptor is one whole frame.
//
// Offloads (virtio-net's, as an e1000-class register interface): the device says in CAPS what it
// can do, the driver picks a subset in OFFLOADS before it sets CTRL.EN. A transmit descriptor with
// CMD.OFFLOAD carries a 12-byte offload header in front of its frame (checksum start/offset, TSO
// type and MSS), so one descriptor can hold a 64 KiB TCP super-frame. Receive descriptors report
// checksum status in STATUS. The device offers only what its wire can carry (a host TAP with
// virtio-net headers can; a cable cannot), as QEMU's virtio-net offers only what its tap peer has.

import { FAULT_REG } from './device-faults.js';

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
  ...FAULT_REG,
  FATAL_REASON: 0x60,
  CAPS: 0x64, // NIC_CAP bits this NIC can do on its wire (device-written)
  OFFLOADS: 0x68, // NIC_CAP bits the driver wants; read when CTRL.EN goes 0 -> 1
  TX_ERRORS: 0x6c, // transmit descriptors refused for a bad offload request
  LAST_TX_ERROR: 0x70, // NIC_TX_ERR code of the last one
  TX_GSO_FRAMES: 0x74, // TSO super-frames the wire took whole
  TX_CSUM_FRAMES: 0x78, // frames sent with a checksum for the wire to complete (TSO included)
  RX_CSUM_FRAMES: 0x7c, // frames received with DESC_DATA_VALID or DESC_CSUM_BLANK
} as const;

export const NIC_CTRL_EN = 1;
export const NIC_STATUS_LINK = 1;
export const NIC_STATUS_FATAL = 2;
export const NIC_MAX_RING = 4096;
/** Largest frame on the wire, and largest a descriptor may carry without TSO. */
export const NIC_MAX_FRAME = 9216;
/** Largest TSO super-frame: with its offload header it must fit the 16-bit LEN. */
export const NIC_MAX_TSO_FRAME = 0xffff - 12;

export const NIC_CAP = {
  /** transmit: complete the Internet checksum from CSUM_START, store it at CSUM_OFFSET */
  TX_CSUM: 1,
  /** transmit: TCP segmentation of IPv4 / IPv6 super-frames (needs TX_CSUM) */
  TSO4: 2,
  TSO6: 4,
  /** receive: checksum status in the descriptor (DATA_VALID, CSUM_BLANK) */
  RX_CSUM: 8,
} as const;
export const NIC_CAP_ALL = NIC_CAP.TX_CSUM | NIC_CAP.TSO4 | NIC_CAP.TSO6 | NIC_CAP.RX_CSUM;

/** INTERNAL: the model itself failed (an exception in hw, not the driver's doing). */
export const NIC_FATAL = { NONE: 0, BAD_RING_CONFIG: 1, BAD_TX_TAIL: 2, BAD_RX_TAIL: 3, RING_FAULT: 4, BAD_OFFLOADS: 5, INTERNAL: 6 } as const;

/** What every register of a removed device reads (a PCIe read nobody answers): STATUS included. */
export const NIC_REG_REMOVED = -1;

export const NIC_DESC_SIZE = 16;
export const DESC = {
  ADDR: 0, // u64 buffer IOVA
  LEN: 8, // u16: tx frame length; rx buffer size in, frame length out
  STATUS: 10, // u16 DD bit 0, ERR bit 1 (device-written)
  ERR_REASON: 12, // u16 DMA fault reason, or NIC_TX_ERR_BASE | code, when ERR (device-written)
  CMD: 14, // u8 transmit: DESC_CMD bits (driver-written); 0 on receive
} as const;
export const DESC_DD = 1;
export const DESC_ERR = 2;
/** receive: the wire vouched for the L4 checksum */
export const DESC_DATA_VALID = 4;
/** receive: the L4 checksum field holds only the pseudo-header sum (virtio's NEEDS_CSUM: the frame
 *  never left this host); whoever sends it on must complete it. Implies DATA_VALID. */
export const DESC_CSUM_BLANK = 8;
/** transmit: the buffer begins with a NIC_TX_HDR and LEN counts it */
export const DESC_CMD_OFFLOAD = 1;

/** The offload header in front of a CMD.OFFLOAD frame (little-endian). */
export const NIC_TX_HDR_SIZE = 12;
export const TX_HDR = {
  FLAGS: 0, // u8 TX_HDR_F bits
  GSO: 1, // u8 NIC_GSO
  HDR_LEN: 2, // u16 Ethernet + IP + TCP header bytes of a TSO frame (each segment repeats them)
  MSS: 4, // u16 TCP payload bytes per segment
  CSUM_START: 6, // u16 frame offset where the summed bytes begin
  CSUM_OFFSET: 8, // u16 where the checksum goes, from CSUM_START
  RESERVED: 10, // u16, must be 0
} as const;
export const TX_HDR_F_CSUM = 1;
export const NIC_GSO = { NONE: 0, TCPV4: 1, TCPV6: 2 } as const;

/** ERR_REASON of a refused offload request: this base ORed with a NIC_TX_ERR code (DMA faults stay below). */
export const NIC_TX_ERR_BASE = 0x200;
export const NIC_TX_ERR = {
  BAD_CMD: 1, // unknown CMD bits
  NOT_ENABLED: 2, // an offload the driver did not enable in OFFLOADS
  SHORT: 3, // LEN cannot hold the header and an Ethernet header
  BAD_HEADER: 4, // unknown flags, GSO type or nonzero reserved field
  CSUM_RANGE: 5, // the checksum field lies outside the frame, or not where TSO needs it
  GSO_NO_CSUM: 6, // TSO without TX_HDR_F_CSUM
  NOT_TCP: 7, // TSO on a frame that is not TCP over the IP version named
  HDR_LEN: 8, // HDR_LEN is not the frame's header length
  MSS: 9, // MSS 0, a segment longer than NIC_MAX_FRAME, or no more payload than one MSS
  TOO_LONG: 10, // longer than NIC_MAX_FRAME without TSO, or than NIC_MAX_TSO_FRAME with it
} as const;
