// Every seccomp table ringside applies, one per role, in one place for the C launcher and the
// addon (as crosvm keeps a policy per device). Two stages, as a process becomes more confined:
//   - kConfineDenied: what ringside-confine refuses before a driver domain, guest or hw runs its
//     first instruction (with the argument checks in confine.c: signals only at itself, no
//     F_SETOWN, no CLONE_NEW*);
//   - a role's table (kRoles): what the process adds once it holds every socket and file it
//     needs, from src/domain/sandbox.ts or xenstored's entry point.
// Deny-lists, not allow-lists: Node and libuv use a syscall set that changes with their versions,
// and an allow-list that misses one kills a backend mid-request. A denied call fails with EPERM.
#ifndef RINGSIDE_SECCOMP_ROLES_H
#define RINGSIDE_SECCOMP_ROLES_H
#include <sys/syscall.h>

#ifndef SYS_fchmodat2
#define SYS_fchmodat2 452
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif
#ifndef SYS_clone3
#define SYS_clone3 435
#endif
#ifndef SYS_open_tree
#define SYS_open_tree 428
#define SYS_move_mount 429
#define SYS_fsopen 430
#define SYS_fsconfig 431
#define SYS_fsmount 432
#define SYS_fspick 433
#endif
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif
#ifndef SYS_io_uring_setup
#define SYS_io_uring_setup 425
#define SYS_io_uring_enter 426
#define SYS_io_uring_register 427
#endif

static const long kConfineDenied[] = {
    SYS_ptrace, SYS_process_vm_readv, SYS_process_vm_writev, SYS_kcmp, SYS_pidfd_open, SYS_pidfd_getfd,
    SYS_pidfd_send_signal, SYS_mount, SYS_umount2, SYS_pivot_root, SYS_chroot, SYS_unshare, SYS_setns,
    SYS_kexec_load, SYS_kexec_file_load, SYS_init_module, SYS_finit_module, SYS_delete_module, SYS_bpf,
    SYS_perf_event_open, SYS_userfaultfd, SYS_keyctl, SYS_add_key, SYS_request_key, SYS_chmod, SYS_fchmod,
    SYS_fchmodat, SYS_fchmodat2, SYS_chown, SYS_fchown, SYS_lchown, SYS_fchownat, SYS_setxattr, SYS_lsetxattr,
    SYS_fsetxattr, SYS_removexattr, SYS_lremovexattr, SYS_fremovexattr, SYS_utime, SYS_utimes, SYS_futimesat,
    SYS_utimensat, SYS_mknod, SYS_mknodat, SYS_open_by_handle_at, SYS_name_to_handle_at, SYS_setuid, SYS_setgid,
    SYS_setreuid, SYS_setregid, SYS_setresuid, SYS_setresgid, SYS_setgroups, SYS_setfsuid, SYS_setfsgid,
    SYS_acct, SYS_swapon, SYS_swapoff, SYS_reboot, SYS_sethostname, SYS_setdomainname, SYS_iopl, SYS_ioperm,
    SYS_settimeofday, SYS_clock_settime, SYS_adjtimex, SYS_clock_adjtime, SYS_quotactl, SYS_syslog, SYS_vhangup,
    SYS_open_tree, SYS_move_mount, SYS_fsopen, SYS_fsconfig, SYS_fsmount, SYS_fspick, SYS_mount_setattr,
    // hv starts a confined domain as the leader of its own process group and kills the group:
    // staying in it is what lets hv take every child along
    SYS_setsid, SYS_setpgid,
};

// A driver domain (blkdom, netdom) and hw once connected: no exec, no new sockets or connections,
// no reshaping of the filesystem, none of the kernel's debugging or module interfaces.
static const long kDriverDenied[] = {
    SYS_execve, SYS_execveat, SYS_ptrace, SYS_process_vm_readv, SYS_process_vm_writev, SYS_mount, SYS_umount2,
    SYS_pivot_root, SYS_chroot, SYS_kexec_load, SYS_init_module, SYS_finit_module, SYS_delete_module, SYS_bpf,
    SYS_perf_event_open, SYS_keyctl, SYS_add_key, SYS_request_key, SYS_unshare, SYS_setns, SYS_socket,
    SYS_connect, SYS_bind, SYS_mkdir, SYS_mkdirat, SYS_unlink, SYS_unlinkat, SYS_rename, SYS_renameat,
    SYS_renameat2, SYS_chmod, SYS_fchmodat, SYS_chown, SYS_fchownat, SYS_symlink, SYS_symlinkat, SYS_link,
    SYS_linkat, SYS_setuid, SYS_setgid, SYS_reboot, SYS_swapon, SYS_swapoff, SYS_settimeofday, SYS_clock_settime,
};
// A driver domain that serves VMs binds vhost-user sockets as devices come: it keeps bind, unlink
// (of a stale socket name) and socket(AF_UNIX) only; Landlock limits where, and connect stays denied.
static const long kDriverVhostDenied[] = {
    SYS_execve, SYS_execveat, SYS_ptrace, SYS_process_vm_readv, SYS_process_vm_writev, SYS_mount, SYS_umount2,
    SYS_pivot_root, SYS_chroot, SYS_kexec_load, SYS_init_module, SYS_finit_module, SYS_delete_module, SYS_bpf,
    SYS_perf_event_open, SYS_keyctl, SYS_add_key, SYS_request_key, SYS_unshare, SYS_setns,
    SYS_connect, SYS_mkdir, SYS_mkdirat, SYS_rename, SYS_renameat,
    SYS_renameat2, SYS_chmod, SYS_fchmodat, SYS_chown, SYS_fchownat, SYS_symlink, SYS_symlinkat, SYS_link,
    SYS_linkat, SYS_setuid, SYS_setgid, SYS_reboot, SYS_swapon, SYS_swapoff, SYS_settimeofday, SYS_clock_settime,
};
// A guest once connected to xenstore: its NBD exports listen and its TAP setup speaks netlink, so
// it keeps socket and bind; connect goes, because a confined guest is still host uid 0 and
// Landlock does not govern connecting to a socket path, so it could reach root's sockets.
static const long kGuestDenied[] = {
    SYS_connect, SYS_ptrace, SYS_process_vm_readv, SYS_process_vm_writev, SYS_kexec_load, SYS_init_module,
    SYS_finit_module, SYS_bpf, SYS_perf_event_open,
};
// xenstored makes a socket per introduced domain, so it keeps socket and bind; it never execs.
static const long kXenstoredDenied[] = {
    SYS_execve, SYS_execveat, SYS_ptrace, SYS_process_vm_readv, SYS_process_vm_writev, SYS_mount, SYS_kexec_load,
    SYS_init_module, SYS_finit_module, SYS_bpf,
};

struct SeccompRole {
  const char* name;
  const long* denied;
  unsigned count;
  /** socket(2) refused for every family but AF_UNIX */
  int socketExceptUnix;
};

#define RS_ROLE(name, table, unix) {name, table, sizeof(table) / sizeof((table)[0]), unix}
static const struct SeccompRole kRoles[] = {
    RS_ROLE("driver", kDriverDenied, 0),
    RS_ROLE("driver-vhost", kDriverVhostDenied, 1),
    RS_ROLE("guest", kGuestDenied, 0),
    RS_ROLE("xenstored", kXenstoredDenied, 0),
};
#undef RS_ROLE

#endif
