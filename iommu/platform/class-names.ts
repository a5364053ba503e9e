// PCI class codes in words, for lists, findings and reports.

const CLASS_NAMES: Record<number, string> = {
  0x0100: 'SCSI storage controller',
  0x0101: 'IDE interface',
  0x0106: 'SATA controller',
  0x0107: 'Serial Attached SCSI controller',
  0x0108: 'Non-Volatile memory controller',
  0x0200: 'Ethernet controller',
  0x0280: 'Network controller',
  0x0300: 'VGA compatible controller',
  0x0302: '3D controller',
  0x0403: 'Audio device',
  0x0600: 'Host bridge',
  0x0601: 'ISA bridge',
  0x0604: 'PCI bridge',
  0x0880: 'System peripheral',
  0x0c03: 'USB controller',
  0x0c05: 'SMBus',
};

/** lspci's words for a class code (24-bit class/subclass/prog-if). */
export function className(classCode: number): string {
  return CLASS_NAMES[(classCode >> 8) & 0xffff] ?? `class 0x${((classCode >> 8) & 0xffff).toString(16).padStart(4, '0')}`;
}
