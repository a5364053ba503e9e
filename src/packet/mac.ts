// MAC addresses as text (vif specs, host.cfg, the vif's xenstore node, a VM's vhost-user vif) and
// as the six bytes of a frame: one syntax and one unicast rule for every reader.

const MAC_TEXT = /^[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5}$/;

const notAMac = (text: string): string => `${JSON.stringify(text.slice(0, 40))} is not a MAC address: expected six hex pairs separated by ':', e.g. 00:16:3e:00:00:01`;

/** A vif's own address, normalised to lower-case `xx:xx:xx:xx:xx:xx`: unicast and not all zeros. */
export function parseMac(text: string): string | { error: string } {
  if (!MAC_TEXT.test(text)) return { error: notAMac(text) };
  const bytes = text.split(':').map((h) => parseInt(h, 16));
  if (bytes.every((b) => b === 0)) return { error: 'MAC 00:00:00:00:00:00 is not a usable address' };
  if (bytes[0] & 1) return { error: `MAC ${text} is a multicast address (lowest bit of the first byte set); a vif needs a unicast one, e.g. 00:16:3e:...` };
  return text.toLowerCase();
}

/** The six bytes of any address a frame may carry (broadcast and multicast too); throws on bad syntax. */
export function parseMacBytes(text: string): Uint8Array {
  if (!MAC_TEXT.test(text)) throw new RangeError(notAMac(text));
  return Uint8Array.from(text.split(':').map((x) => parseInt(x, 16)));
}

export function formatMac(b: Uint8Array, off = 0): string {
  const out: string[] = [];
  for (let i = 0; i < 6; i++) out.push(b[off + i].toString(16).padStart(2, '0'));
  return out.join(':');
}

/** The MAC at buf[off..off+6) as one number (48 bits fit a double), for switch tables. */
export function macKey(buf: Uint8Array, off: number): number {
  return (buf[off] * 0x10000000000) + (buf[off + 1] * 0x100000000) + (((buf[off + 2] << 24) | (buf[off + 3] << 16) | (buf[off + 4] << 8) | buf[off + 5]) >>> 0);
}
