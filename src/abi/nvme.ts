// The register page and queue-entry layouts of the emulated NVMe-like controller, shared by the
// device model (src/hw/nvme.ts) and the driver (src/drivers/nvme.ts).
//
// Admin-free: the admin queue registers (AQA/ASQ/ACQ) describe the controller's single I/O queue
// pair, and what Identify would return sits in read-only registers (NSZE, LBADS, MDTS). Entry
// layouts follow NVMe 1.4: 64-byte submission entries, 16-byte completion entries with a phase
// bit, command ids, PRP1/PRP2 with PRP lists. The doorbells live in the same 4 KiB page as the
// registers (0x100/0x104 instead of 0x1000) because the page is what hv shares with the driver.

import { FAULT_REG } from './device-faults.js';

export const NVME_BAR_SIZE = 4096;

export const NVME_REG = {
  CAP: 0x00, // u64: MQES [15:0] (entries - 1), CQR bit 16
  VS: 0x08,
  CC: 0x14, // EN bit 0
  CSTS: 0x1c, // RDY bit 0, CFS bit 1
  AQA: 0x24, // SQ entries - 1 [11:0], CQ entries - 1 [27:16]
  ASQ: 0x28, // u64 submission queue IOVA, 4 KiB aligned
  ACQ: 0x30, // u64 completion queue IOVA, 4 KiB aligned
  NSZE: 0x40, // u64 namespace 1 size in logical blocks (device-written)
  LBADS: 0x48, // log2 of the logical block size
  MDTS: 0x4c, // most 4 KiB pages one command may transfer
  ...FAULT_REG,
  CFS_REASON: 0x60, // why CSTS.CFS was set (NVME_CFS_*), for the driver's log
  SQ0TDBL: 0x100,
  CQ0HDBL: 0x104,
} as const;

export const NVME_VS = 0x00010400;
export const NVME_CC_EN = 1;
export const NVME_CSTS_RDY = 1;
export const NVME_CSTS_CFS = 2;
export const NVME_MAX_QUEUE_ENTRIES = 1024;
export const NVME_MDTS_PAGES = 64;

export const NVME_CFS = {
  NONE: 0,
  BAD_QUEUE_CONFIG: 1,
  BAD_SQ_DOORBELL: 2,
  BAD_CQ_DOORBELL: 3,
  SQ_FETCH_FAULT: 4,
  CQ_POST_FAULT: 5,
  /** the model itself failed (an exception in hw, not the driver's doing) */
  INTERNAL: 6,
} as const;

/** What every register of a removed device reads (a PCIe read nobody answers): CSTS included. */
export const NVME_REG_REMOVED = -1;

export const NVME_SQE_SIZE = 64;
export const NVME_CQE_SIZE = 16;

/** Submission entry offsets. */
export const SQE = {
  CDW0: 0, // opcode [7:0], CID [31:16]
  NSID: 4,
  PRP1: 24,
  PRP2: 32,
  CDW10: 40, // read/write: SLBA low; DSM: NR [7:0]
  CDW11: 44, // read/write: SLBA high; DSM: attributes (AD bit 2)
  CDW12: 48, // read/write: NLB [15:0], zero-based
} as const;

/** Completion entry offsets. */
export const CQE = {
  DW0: 0, // command specific (we put the DMA fault reason here)
  SQHD: 8, // u16 SQ head, u16 SQ id
  CID: 12, // u16
  STATUS: 14, // u16: phase bit 0, SC [8:1], SCT [11:9], DNR bit 15
} as const;

export const NVME_OP = { FLUSH: 0x00, WRITE: 0x01, READ: 0x02, DSM: 0x09 } as const;
export const NVME_DSM_AD = 1 << 2;
export const NVME_DSM_RANGE_SIZE = 16;

/** Status codes as (SCT << 8) | SC. */
export const NVME_SC = {
  SUCCESS: 0x000,
  INVALID_OPCODE: 0x001,
  INVALID_FIELD: 0x002,
  DATA_TRANSFER_ERROR: 0x004,
  INTERNAL: 0x006,
  INVALID_NAMESPACE: 0x00b,
  PRP_OFFSET_INVALID: 0x013,
  LBA_OUT_OF_RANGE: 0x080,
  WRITE_FAULT: 0x280,
  UNRECOVERED_READ: 0x281,
} as const;

/** The status halfword of a completion (phase excluded) for an (SCT << 8 | SC) code. */
export function statusField(code: number): number {
  const sc = code & 0xff;
  const sct = (code >> 8) & 7;
  const dnr = code === 0 ? 0 : 1;
  return (sc << 1) | (sct << 9) | (dnr << 15);
}

/** (SCT << 8) | SC from a completion's status halfword. */
export function statusCode(status: number): number {
  return (((status >> 9) & 7) << 8) | ((status >> 1) & 0xff);
}

export function statusText(code: number): string {
  for (const [k, v] of Object.entries(NVME_SC)) if (v === code) return k.toLowerCase().replace(/_/g, ' ');
  return `status 0x${code.toString(16)}`;
}

