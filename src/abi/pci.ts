// The PCI configuration-space header (type 0/1) and command-register bits, as the PCI Local Bus
// specification lays them out: one definition for the driver that programs a function and for the
// platform's config-space emulation that filters what an owner writes.

export const CFG_SIZE = 256;

export const CFG = {
  VENDOR: 0x00,
  DEVICE: 0x02,
  COMMAND: 0x04,
  STATUS: 0x06,
  REVISION: 0x08,
  CLASS: 0x09,
  CACHE_LINE: 0x0c,
  LATENCY: 0x0d,
  HEADER_TYPE: 0x0e,
  BIST: 0x0f,
  BAR0: 0x10,
  SUBSYS_VENDOR: 0x2c,
  SUBSYS_ID: 0x2e,
  ROM: 0x30,
  CAP_PTR: 0x34,
  ROM_BRIDGE: 0x38,
  INT_LINE: 0x3c,
  INT_PIN: 0x3d,
  PM_CAP: 0x40,
  EXP_CAP: 0x50,
} as const;

export const CMD_IO = 1 << 0;
export const CMD_MEMORY = 1 << 1;
export const CMD_BUS_MASTER = 1 << 2;
export const CMD_MWI = 1 << 4;
export const CMD_PARITY = 1 << 6;
export const CMD_SERR = 1 << 8;
export const CMD_INTX_DISABLE = 1 << 10;
