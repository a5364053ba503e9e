// The DMA-fault registers both emulated PCI devices (NVMe and NIC) carry at the same offsets of
// their register page, written by the device: a count, the last fault's word and its IOVA.

export const FAULT_REG = {
  FAULTS: 0x50, // DMA faults since reset
  LAST_FAULT: 0x54, // the VT-d fault reason of the last one, or a DMA_STOP code
  LAST_FAULT_IOVA: 0x58, // u64
} as const;

/** LAST_FAULT values for stops that are not VT-d fault reasons. */
export const DMA_STOP = { 'interrupt-window': 0x101, unbacked: 0x102, 'too-large': 0x103 } as const;
