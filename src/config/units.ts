// Sizes of images and media. Suffixes are binary, as qemu-img reads them (64M = 64 MiB), so an image
// made by `qemu-img create x.img 64M` and `size=64M` agree.

const SIZE_SHIFT: Record<string, number> = { '': 0, K: 10, M: 20, G: 30, T: 40 };

export const SECTOR = 512;
/** Far beyond anything a test system needs, and well inside exact double precision. */
export const MAX_SIZE_BYTES = 2 ** 44;

/** Parses `64M`, `1G`, `512K`, `1048576` (bytes); returns bytes or a message saying what is wrong. */
export function parseSize(text: string): number | string {
  const m = /^([0-9]{1,16})\s*([KMGT]?)(?:i?B)?$/i.exec(text.trim());
  if (!m) return `${JSON.stringify(text.slice(0, 40))} is not a size: expected a number with an optional K, M, G or T suffix, e.g. 64M`;
  const bytes = Number(m[1]) * 2 ** SIZE_SHIFT[m[2].toUpperCase()];
  if (bytes === 0) return 'size must be greater than 0';
  if (bytes > MAX_SIZE_BYTES) return `${text} is larger than the ${MAX_SIZE_BYTES / 2 ** 40} TiB limit`;
  if (bytes % SECTOR !== 0) return `${text} is not a multiple of ${SECTOR} bytes (one sector)`;
  return bytes;
}
