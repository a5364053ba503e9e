// What a confined driver domain may touch, decided by the toolstack from the system config: the
// raw images it serves (read-write, or read-only for mode=r disks) and, for a TAP uplink, the
// tun device plus CAP_NET_ADMIN. hv adds only what any domain needs to run at all.
import type { SystemConfig, SystemDomain } from '../../src/config/system.js';
import type { ConfineSpec } from '../../src/hypercall/protocol.js';

export function confineFor(cfg: SystemDomain, sys: SystemConfig): ConfineSpec {
  const ro = new Set<string>();
  const rw = new Set<string>();
  for (const d of sys.domains) {
    for (const disk of d.disks) {
      // A device target is reached through the IOMMU, not the filesystem.
      if (disk.backend !== cfg.name || disk.device !== undefined) continue;
      (disk.access === 'w' ? rw : ro).add(disk.target);
    }
  }
  for (const p of rw) ro.delete(p);
  if (cfg.uplink) rw.add('/dev/net/tun');
  return { ro: [...ro], rw: [...rw], netAdmin: cfg.uplink !== undefined };
}
