// Privilege dropping for driver domains, applied once they hold every socket they need: they
// may read and write their media and rings, but never exec, trace, mount, open new sockets or
// reshape the filesystem. A denied call fails with EPERM, so a compromised driver stays boxed in.
import { native } from '../native/index.js';

export const DRIVER_DENY = [
  'execve', 'execveat', 'ptrace', 'process_vm_readv', 'process_vm_writev', 'mount', 'umount2', 'pivot_root',
  'chroot', 'kexec_load', 'init_module', 'finit_module', 'delete_module', 'bpf', 'perf_event_open', 'keyctl',
  'add_key', 'request_key', 'unshare', 'setns', 'socket', 'connect', 'bind', 'mkdir', 'mkdirat', 'unlink',
  'unlinkat', 'rename', 'renameat', 'renameat2', 'chmod', 'fchmodat', 'chown', 'fchownat', 'symlink', 'symlinkat',
  'link', 'linkat', 'setuid', 'setgid', 'reboot', 'swapon', 'swapoff', 'settimeofday', 'clock_settime',
];

/**
 * A blkdom that serves VMs listens for vhost-user frontends on Unix sockets it binds while it runs
 * (vbds come and go). It keeps socket(AF_UNIX) only, bind, and unlink for a stale socket name;
 * Landlock limits both to the socket directory dom0 gave it, and connect stays denied.
 */
const LISTEN_UNIX_KEEPS = ['socket', 'bind', 'unlink', 'unlinkat'];

export function dropDriverPrivileges(log: (l: string) => void, opts: { listenUnix?: boolean } = {}): void {
  deny(opts.listenUnix ? [...DRIVER_DENY.filter((s) => !LISTEN_UNIX_KEEPS.includes(s)), 'socket-except-unix'] : DRIVER_DENY, log);
}

/**
 * A guest, once connected to xenstore, opens no new outbound connection: its NBD exports listen
 * and its TAP setup speaks netlink. connect() goes, because a confined guest is still host uid 0
 * and Landlock does not govern connecting to a socket path on today's kernels, so it could
 * otherwise reach root's sockets (privileged xenstore, dom0's control socket, other exports).
 */
export const GUEST_DENY = ['connect', 'ptrace', 'process_vm_readv', 'process_vm_writev', 'kexec_load', 'init_module', 'finit_module', 'bpf', 'perf_event_open'];

export function dropGuestPrivileges(log: (l: string) => void): void {
  deny(GUEST_DENY, log);
}

/** Adds `list` to the process's seccomp deny-list (every thread) and says what is in force. */
function deny(list: string[], log: (l: string) => void): void {
  native.seccompDeny(list);
  const st = native.sandboxStatus();
  log(`sandbox: no_new_privs=${st.noNewPrivs ? 1 : 0} seccomp=${st.seccomp === 2 ? 'filter' : st.seccomp} (${list.length} syscalls denied)`);
}
