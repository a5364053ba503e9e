// What a confined domain may touch, decided by the toolstack from the system config. A driver
// domain: the raw images it serves (read-write, or read-only for mode=r disks) and, for a TAP
// uplink, the tun device plus CAP_NET_ADMIN. A guest: its own directory for NBD export sockets,
// and for vifs the tun device, its network namespace and CAP_NET_ADMIN inside it (no media: its
// disks are reached through blkfront). hv adds only what any domain needs to run at all.
import { join } from 'node:path';
import type { SystemConfig, SystemDomain } from '../../src/config/system.js';
import { vifNetns } from '../../src/config/vif-spec.js';
import type { ConfineSpec } from '../../src/hypercall/protocol.js';

/**
 * Where a guest binds its NBD exports: a directory of its own, so the right to make and remove
 * sockets there cannot reach another guest's export. Users keep connecting to
 * `<nbd>/<guest>-<vdev>.sock`, a link dom0 makes into this directory (see exportLink).
 */
export function guestExportDir(nbdDir: string, guest: string): string {
  return join(nbdDir, 'guest', guest);
}

/** The path a user connects to, and where it points (relative, inside the nbd directory). */
export function exportLink(nbdDir: string, guest: string, vdev: string): { path: string; target: string } {
  return { path: join(nbdDir, `${guest}-${vdev}.sock`), target: join('guest', guest, `${vdev}.sock`) };
}

/**
 * `vhostDir`: a blk driver domain serving VMs binds its vhost-user sockets there. `vm`: a VM's
 * QEMU reads its kernel and initramfs, makes its console and QMP sockets in its own directory,
 * and opens /dev/kvm only when it runs under KVM.
 */
export function confineFor(cfg: SystemDomain, sys: SystemConfig, nbdDir: string, dirs: { vhostDir?: string; vm?: { dir: string; kvm: boolean } } = {}): ConfineSpec {
  if (cfg.role === 'guest') return guestConfine(cfg, nbdDir);
  if (cfg.role === 'vm') {
    if (!cfg.vm || !dirs.vm) throw new Error(`confineFor: ${cfg.name} is a VM without its boot settings or directory`);
    const ro = [cfg.vm.kernel, ...(cfg.vm.ramdisk ? [cfg.vm.ramdisk] : [])];
    return { ro, rw: dirs.vm.kvm ? ['/dev/kvm'] : [], netAdmin: false, sockDir: dirs.vm.dir };
  }
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
  return {
    ro: [...ro],
    rw: [...rw],
    netAdmin: cfg.uplink !== undefined,
    ...(dirs.vhostDir !== undefined ? { sockDir: dirs.vhostDir } : {}),
    ...(cfg.storage.length > 0 ? { rwTrees: [...cfg.storage] } : {}),
  };
}

/**
 * Whether a running blk driver domain's confinement lets it open `target`: one of the images it
 * was started for, or a file under its storage directories. A VM migrating in brings disks the
 * destination's blkdom was not started for; this says so before anything is created.
 */
export function mayServe(backend: SystemDomain, sys: SystemConfig, target: string, access: 'r' | 'w'): boolean {
  if (backend.storage.some((dir) => target.startsWith(dir.endsWith('/') ? dir : dir + '/'))) return true;
  return sys.domains.some((d) => d.disks.some((x) => x.backend === backend.name && x.device === undefined && x.target === target && (access === 'r' || x.access === 'w')));
}

function guestConfine(cfg: SystemDomain, nbdDir: string): ConfineSpec {
  const spec: ConfineSpec = { ro: [], rw: [], netAdmin: false, sockDir: guestExportDir(nbdDir, cfg.name) };
  if (cfg.vifs.length > 0) {
    // config checking made every vif name the same namespace (a confined guest has one)
    spec.netns = vifNetns(cfg.name, cfg.vifs[0]);
    spec.rw.push('/dev/net/tun');
    spec.netAdmin = true;
  }
  return spec;
}
