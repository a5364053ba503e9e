// The QEMU command line of a ringside VM, built in one place for dom0 and for the tests that run
// QEMU's own backends beside ours. Guest RAM is a shared memfd whenever a disk is served over
// vhost-user (the backend maps it), the console and QMP are Unix sockets in the VM's directory, and
// nothing is attached that was not asked for (-nodefaults).

export type Accelerator = 'kvm' | 'tcg';

export type VmDisk =
  /** QEMU's built-in virtio-blk on an image file (the baseline). */
  | { kind: 'file'; path: string; format?: 'raw' | 'qcow2'; readonly?: boolean }
  /** vhost-user-blk: a backend listens on `socket`; `reconnectS` makes QEMU ride out its restart. */
  | { kind: 'vhost-user'; socket: string; queues?: number; reconnectS?: number };

/** A virtio-net NIC whose backend (netdom) listens on `socket` over vhost-user. */
export interface VmNic {
  socket: string;
  mac: string;
  mtu: number;
  reconnectS?: number;
}

export interface QemuSpec {
  accel: Accelerator;
  /** the CPU model; by default the host's own under KVM and qemu64 under TCG */
  cpu?: string;
  memoryMiB: number;
  vcpus: number;
  kernel: string;
  initrd?: string | undefined;
  cmdline: string;
  disks: readonly VmDisk[];
  nics?: readonly VmNic[];
  consoleSocket: string;
  qmpSocket: string;
  /** Guest RAM as a shared memfd even without a vhost-user disk. */
  sharedMemory?: boolean;
  /**
   * A migration's destination: QEMU listens on this Unix socket for the source's stream and runs
   * the guest once it has arrived. Everything else must match the source's command line.
   */
  incoming?: string;
}

/** QEMU splits -chardev/-device values at commas: a path holding one would be misread. */
function optionValue(v: string, what: string): string {
  if (v.includes(',') || /[\x00-\x1f]/.test(v)) throw new Error(`${what} ${JSON.stringify(v.slice(0, 80))} holds a comma or a control character, which a QEMU option value cannot carry`);
  return v;
}

/**
 * Under TCG, QEMU before 9.0 loses guest writes in a live migration: its dirty-bitmap sync takes a
 * fast path for a RAM block that starts and ends on a 64-page (256 KiB) boundary, and that path
 * clears the dirty bits without resetting the vCPUs' TLB entries, so later stores through a cached
 * entry are never marked and the destination gets a stale page (the fix is QEMU 9.0's "Fix
 * migration dirty bitmap coherency with TCG memory access"; Debian 12 ships 7.2). A stale per-CPU
 * page is what a guest panic after a move looked like here ("Kernel stack is corrupted in:
 * do_idle"). Guest RAM 8 KiB off that grain sends every sync down the per-page path, which resets
 * the TLB entries. KVM logs dirty pages in the kernel, so it keeps the exact size and the fast path.
 * Both ends of a migration build this the same way, so their RAM sizes agree.
 */
export const TCG_RAM_PAD_KIB = 8;

function guestRam(s: QemuSpec): string {
  return s.accel === 'tcg' ? `${s.memoryMiB * 1024 + TCG_RAM_PAD_KIB}K` : `${s.memoryMiB}M`;
}

/** The arguments after `qemu-system-x86_64`. */
export function qemuArgv(s: QemuSpec): string[] {
  const shared = s.sharedMemory === true || s.disks.some((d) => d.kind === 'vhost-user') || (s.nics ?? []).length > 0;
  // Nested KVM rejects -cpu host here (MSR 0x10a); on a real KVM host it is what users expect.
  const ram = guestRam(s);
  const a = ['-accel', s.accel, '-cpu', optionValue(s.cpu ?? (s.accel === 'kvm' ? 'host' : 'qemu64'), 'CPU model'), '-m', ram, '-smp', String(s.vcpus)];
  a.push('-display', 'none', '-no-reboot', '-nodefaults', '-no-user-config');
  if (shared) a.push('-object', `memory-backend-memfd,id=mem,size=${ram},share=on`, '-machine', 'q35,memory-backend=mem');
  else a.push('-machine', 'q35');
  a.push('-kernel', s.kernel);
  if (s.initrd !== undefined) a.push('-initrd', s.initrd);
  a.push('-append', s.cmdline);
  for (const [i, d] of s.disks.entries()) {
    if (d.kind === 'file') {
      a.push('-drive', `file=${optionValue(d.path, 'disk image')},if=virtio,format=${d.format ?? 'raw'}${d.readonly ? ',readonly=on' : ''}`);
      continue;
    }
    a.push(
      '-chardev',
      `socket,id=vub${i},path=${optionValue(d.socket, 'vhost-user socket')}${d.reconnectS ? `,reconnect=${d.reconnectS}` : ''}`,
      '-device',
      `vhost-user-blk-pci,chardev=vub${i},num-queues=${d.queues ?? 1}`,
    );
  }
  // vectors=0: under TCG, QEMU 7.2 crashes in vhost_net_start (msix_set_vector_notifiers, seen
  // here under gdb) when a vhost-user NIC uses MSI-X, so the NIC takes INTx. ctrl_vq and the
  // features that ride on it are off: our backend serves one queue pair and no control queue.
  for (const [i, n] of (s.nics ?? []).entries()) {
    a.push(
      '-chardev',
      `socket,id=vun${i},path=${optionValue(n.socket, 'vhost-user socket')}${n.reconnectS ? `,reconnect=${n.reconnectS}` : ''}`,
      '-netdev',
      `vhost-user,id=net${i},chardev=vun${i}`,
      '-device',
      `virtio-net-pci,netdev=net${i},mac=${optionValue(n.mac, 'MAC')},host_mtu=${n.mtu},ctrl_vq=off,ctrl_rx=off,ctrl_vlan=off,ctrl_mac_addr=off,guest_announce=off,mq=off${s.accel === 'tcg' ? ',vectors=0' : ''}`,
    );
  }
  a.push('-chardev', `socket,id=con0,path=${optionValue(s.consoleSocket, 'console socket')},server=on,wait=off`, '-serial', 'chardev:con0');
  a.push('-qmp', `unix:${optionValue(s.qmpSocket, 'QMP socket')},server=on,wait=off`, '-nic', 'none');
  if (s.incoming !== undefined) a.push('-incoming', `unix:${optionValue(s.incoming, 'incoming migration socket')}`);
  return a;
}
