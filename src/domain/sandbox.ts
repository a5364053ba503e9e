// Privilege dropping for driver domains, applied once they hold every socket they need: they
// may read and write their media and rings, but never exec, trace, mount, open new sockets or
// reshape the filesystem. A denied call fails with EPERM, so a compromised driver stays boxed in.
import { native } from '../native/index.js';

// The tables are native/seccomp-roles.h, one per role, shared with ringside-confine: a role is
// all a process can ask for, so no list is assembled at run time.

/** A blkdom or netdom that serves VMs keeps socket(AF_UNIX), bind and unlink for its vhost-user sockets. */
export function dropDriverPrivileges(log: (l: string) => void, opts: { listenUnix?: boolean } = {}): void {
  applySeccompRole(opts.listenUnix ? 'driver-vhost' : 'driver', log);
}

export function dropGuestPrivileges(log: (l: string) => void): void {
  applySeccompRole('guest', log);
}

/** Adds the role's table to the process's seccomp filter (every thread) and says what is in force. */
export function applySeccompRole(role: 'driver' | 'driver-vhost' | 'guest' | 'xenstored', log: (l: string) => void): void {
  const n = native.seccompRole(role);
  const st = native.sandboxStatus();
  log(`sandbox: no_new_privs=${st.noNewPrivs ? 1 : 0} seccomp=${st.seccomp === 2 ? 'filter' : st.seccomp} (role ${role}: ${n} syscalls denied)`);
}
