// ringside-confine: confines a driver domain or guest before its first instruction runs, then execs it.
//
// Why a launcher and not a call from the domain itself: Landlock's restrict_self binds only the
// calling thread, and Node has started V8 and libuv threads before any of our code runs. A
// ruleset enforced here, in a single-threaded process, is inherited by everything the exec'd
// program ever creates. Capabilities are dropped here for the same reason.
//
//   ringside-confine [RULE]... [--netns PATH] [--keep-cap net_admin] -- PROG ARG...
//   ringside-confine --abi            prints the kernel's Landlock ABI version (0: none)
//
//   --ro PATH       read files (and list directories) beneath PATH       (hv's base set)
//   --rx PATH       as --ro, and execute                                  (hv's base set)
//   --rw PATH       read and write one file or device, never a directory  (hv's base set)
//   --ro-file PATH  read one file or device; PATH must not be a symlink   (the toolstack's)
//   --rw-file PATH  read, write, truncate one file or device; no symlink  (the toolstack's)
//   --rw-tree DIR   read, write, truncate the files that exist beneath DIR, but make, remove or
//                   list nothing there: a blk domain's shared storage, whose images VMs bring
//                   in by migration. DIR must be a directory and not a symlink (the toolstack's)
//   --sock-dir DIR  create and remove names beneath DIR, nothing else: a guest's NBD export
//                   sockets. DIR must be a directory and not a symlink     (the toolstack's)
//   --netns PATH    join the network namespace bound at PATH (no symlink) and, first, the user
//                   namespace that owns it. A namespace owned by the host's user namespace is
//                   refused: CAP_NET_ADMIN counts per user namespace, so held there it would
//                   reach the host's interfaces (netlink can name any namespace by pid or id).
//                   Joined from the owner, the kept capability governs that namespace alone.
//                   setns is refused afterwards, so there is no way back
//   --keep-cap      net_admin only (a TAP uplink, or a guest's TAP in its own namespace, needs
//                   it); every other capability is dropped
//
// Everything else on the filesystem is refused (EACCES), TCP bind/connect is refused, and the
// process can signal nobody outside itself: Landlock scoping (ABI 6) and, on any kernel, a
// seccomp filter that lets the signal calls name only its own pid and refuses F_SETOWN/F_SETSIG
// and FIOSETOWN/SIOCSPGRP (SIGIO sent for us). That filter also refuses for good what Landlock
// does not govern: chmod/chown/xattr/utime changes (uid 0 owns most files), io_uring (its socket
// and file operations would pass around seccomp), ptrace and friends, new namespaces (setns,
// unshare, clone with CLONE_NEW*, clone3), mounts old and new, modules, keys and uid changes,
// and leaving the process group hv kills it by (setsid, setpgid). Capabilities go from the bounding,
// inheritable, permitted and effective sets, and SECBIT_NOROOT stops uid 0 from getting them
// back on exec. A kernel without Landlock gets the rest and a line on stderr saying so.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <linux/audit.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <linux/securebits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/nsfs.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

// Landlock's user ABI (include/uapi/linux/landlock.h), spelled out here because the distribution
// headers lag the kernels we run on.
#ifndef SYS_landlock_create_ruleset
#define SYS_landlock_create_ruleset 444
#define SYS_landlock_add_rule 445
#define SYS_landlock_restrict_self 446
#endif
#define LL_CREATE_RULESET_VERSION (1U << 0)
#define LL_RULE_PATH_BENEATH 1

#define FS_EXECUTE (1ULL << 0)
#define FS_WRITE_FILE (1ULL << 1)
#define FS_READ_FILE (1ULL << 2)
#define FS_READ_DIR (1ULL << 3)
#define FS_REMOVE_FILE (1ULL << 5)
#define FS_MAKE_SOCK (1ULL << 9)
#define FS_V1_ALL ((1ULL << 13) - 1) /* EXECUTE .. MAKE_SYM */
#define FS_REFER (1ULL << 13)        /* ABI 2 */
#define FS_TRUNCATE (1ULL << 14)     /* ABI 3 */
#define FS_IOCTL_DEV (1ULL << 15)    /* ABI 5 */
#define NET_BIND_TCP (1ULL << 0)     /* ABI 4 */
#define NET_CONNECT_TCP (1ULL << 1)
#define SCOPE_ABSTRACT_UNIX (1ULL << 0) /* ABI 6 */
#define SCOPE_SIGNAL (1ULL << 1)

struct ruleset_attr {
  uint64_t handled_access_fs;
  uint64_t handled_access_net;
  uint64_t scoped;
};

struct path_beneath_attr {
  uint64_t allowed_access;
  int32_t parent_fd;
} __attribute__((packed));

#define MAX_RULES 256

enum kind { RO, RX, RW, RO_FILE, RW_FILE, SOCK_DIR, RW_TREE };
struct rule {
  enum kind kind;
  const char* path;
};

static void die(const char* what, const char* detail) {
  fprintf(stderr, "ringside-confine: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
  exit(126);
}

static void die_errno(const char* what, const char* path) {
  fprintf(stderr, "ringside-confine: %s %s: %s\n", what, path ? path : "", strerror(errno));
  exit(126);
}

static int landlock_abi(void) {
  long v = syscall(SYS_landlock_create_ruleset, NULL, 0, LL_CREATE_RULESET_VERSION);
  return v < 0 ? 0 : (int)v;
}

static uint64_t handled_fs(int abi) {
  uint64_t fs = FS_V1_ALL;
  if (abi >= 2) fs |= FS_REFER;
  if (abi >= 3) fs |= FS_TRUNCATE;
  if (abi >= 5) fs |= FS_IOCTL_DEV;
  return fs;
}

// The rights one rule grants, cut down to what the kernel handles and to what makes sense on a
// non-directory (the kernel refuses directory rights on a file rule).
static uint64_t rights(const struct rule* r, int is_dir, uint64_t handled) {
  uint64_t file_rights = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV;
  uint64_t a;
  switch (r->kind) {
    case RO: a = FS_READ_FILE | FS_READ_DIR; break;
    case RX: a = FS_READ_FILE | FS_READ_DIR | FS_EXECUTE; break;
    case RO_FILE: a = FS_READ_FILE; break;
    // Neither read nor write: bind() makes the socket, unlink() clears a stale one. Listing,
    // opening or making anything else there stays refused.
    case SOCK_DIR: a = FS_MAKE_SOCK | FS_REMOVE_FILE; break;
    case RW_TREE: a = FS_READ_FILE | FS_WRITE_FILE | FS_TRUNCATE; break;
    default: a = FS_READ_FILE | FS_WRITE_FILE | FS_TRUNCATE | FS_IOCTL_DEV; break;
  }
  if (!is_dir) a &= file_rights;
  return a & handled;
}

static void apply_landlock(const struct rule* rules, int n, int abi) {
  struct ruleset_attr attr = {0};
  size_t size = sizeof(uint64_t);
  attr.handled_access_fs = handled_fs(abi);
  if (abi >= 4) {
    attr.handled_access_net = NET_BIND_TCP | NET_CONNECT_TCP;
    size = 2 * sizeof(uint64_t);
  }
  if (abi >= 6) {
    attr.scoped = SCOPE_ABSTRACT_UNIX | SCOPE_SIGNAL;
    size = sizeof attr;
  }
  int rs = (int)syscall(SYS_landlock_create_ruleset, &attr, size, 0);
  if (rs < 0) die_errno("landlock_create_ruleset", NULL);
  for (int i = 0; i < n; i++) {
    // The toolstack's paths are taken literally: a symlink there could widen a rule for one
    // image into a rule for the tree it points at.
    int toolstack = rules[i].kind == RO_FILE || rules[i].kind == RW_FILE || rules[i].kind == SOCK_DIR || rules[i].kind == RW_TREE;
    int fd = open(rules[i].path, O_PATH | O_CLOEXEC | (toolstack ? O_NOFOLLOW : 0));
    if (fd < 0) {
      // A path that does not exist cannot be reached either: nothing to allow.
      if (errno == ENOENT) continue;
      die_errno("cannot open rule path", rules[i].path);
    }
    struct stat st;
    if (fstat(fd, &st) < 0) die_errno("fstat", rules[i].path);
    int is_file = S_ISREG(st.st_mode) || S_ISBLK(st.st_mode) || S_ISCHR(st.st_mode);
    if (rules[i].kind == SOCK_DIR || rules[i].kind == RW_TREE) {
      if (!S_ISDIR(st.st_mode))
        die(S_ISLNK(st.st_mode) ? "a directory rule names a symlink; give the directory itself" : "a directory rule names something that is not a directory", rules[i].path);
    } else if (rules[i].kind != RO && rules[i].kind != RX && !is_file)
      die(S_ISLNK(st.st_mode) ? "a file rule names a symlink; give the file itself" : "a file rule names something that is not a file or device", rules[i].path);
    struct path_beneath_attr pb = {rights(&rules[i], S_ISDIR(st.st_mode), attr.handled_access_fs), fd};
    if (pb.allowed_access != 0 && syscall(SYS_landlock_add_rule, rs, LL_RULE_PATH_BENEATH, &pb, 0) < 0)
      die_errno("landlock_add_rule", rules[i].path);
    close(fd);
  }
  if (syscall(SYS_landlock_restrict_self, rs, 0) < 0) die_errno("landlock_restrict_self", NULL);
  close(rs);
}

// The tables themselves, shared with the addon's second stage.
#include "../seccomp-roles.h"

// Signal calls whose first argument is a pid (or, for tkill, a tid): allowed only at ourselves.
static const long kSignalByPid[] = {SYS_kill, SYS_tkill, SYS_tgkill, SYS_rt_sigqueueinfo, SYS_rt_tgsigqueueinfo};
// Refused as absent, so libuv falls back to its threadpool instead of failing.
static const long kAbsent[] = {SYS_io_uring_setup, SYS_io_uring_enter, SYS_io_uring_register, SYS_clone3};
// Ways to have the kernel signal a process for us (SIGIO/SIGURG to a chosen owner): the kernel
// allows them whenever our euid is root, so they go the way of kill().
#define F_SETOWN_ 8
#define F_SETSIG_ 10
#define F_SETOWN_EX_ 15
#define FIOSETOWN_ 0x8901
#define SIOCSPGRP_ 0x8902
static const uint32_t kFcntlDenied[] = {F_SETOWN_, F_SETSIG_, F_SETOWN_EX_};
static const uint32_t kIoctlDenied[] = {FIOSETOWN_, SIOCSPGRP_};
// clone() with any CLONE_NEW* flag: a new user namespace would hand us every capability in it.
#define CLONE_NEW_ANY 0x7E020080u

#define N(a) (sizeof(a) / sizeof((a)[0]))

/** nr == `nr`: refuse (EPERM) when argument `arg`'s low word is one of `vals`, else allow. */
static unsigned deny_arg_values(struct sock_filter* f, unsigned n, long nr, int arg, const uint32_t* vals, unsigned count) {
  f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)nr, 0, (uint8_t)(count + 3));
  f[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[arg]));
  for (unsigned i = 0; i < count; i++)
    f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, vals[i], (uint8_t)(count - i), 0);
  f[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
  f[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM);
  return n;
}

static void apply_seccomp(pid_t self) {
  struct sock_filter f[32 + 2 * N(kConfineDenied) + 3 * N(kSignalByPid) + 2 * N(kAbsent) + N(kFcntlDenied) + N(kIoctlDenied)];
  unsigned n = 0;
  f[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch));
  f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0);
  f[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS);
  f[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr));
  // x32 syscalls would slip past every number below
  f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000, 0, 1);
  f[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS);
  for (unsigned i = 0; i < N(kConfineDenied); i++) {
    f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)kConfineDenied[i], 0, 1);
    f[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM);
  }
  for (unsigned i = 0; i < N(kAbsent); i++) {
    f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)kAbsent[i], 0, 1);
    f[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS);
  }
  n = deny_arg_values(f, n, SYS_fcntl, 1, kFcntlDenied, N(kFcntlDenied));
  n = deny_arg_values(f, n, SYS_ioctl, 1, kIoctlDenied, N(kIoctlDenied));
  f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_clone, 0, 4);
  f[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0]));
  f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, CLONE_NEW_ANY, 1, 0);
  f[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
  f[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM);
  for (unsigned i = 0; i < N(kSignalByPid); i++) {
    // nr matches: look at the low word of the first argument (a pid is an int); anything but
    // our own pid (another process, 0 = our group, negative = a group or everyone) is refused.
    f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)kSignalByPid[i], 0, 2);
    f[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0]));
    f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JA, 0, 0, 0);
  }
  // The JA above is patched below to reach this pair: allow self, refuse the rest.
  unsigned check = n;
  f[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
  f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)self, 0, 1);
  f[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
  f[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM);
  for (unsigned i = 0; i < check; i++)
    if (f[i].code == (BPF_JMP | BPF_JA)) f[i].k = (check + 1) - (i + 1);
  struct sock_fprog prog = {(unsigned short)n, f};
  if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0) die_errno("seccomp", NULL);
}

// Opened while still the host's root, before Landlock is on; joined after the rules are in place
// (their paths are resolved with the host's privileges) and before capabilities go (setns needs
// CAP_SYS_ADMIN, and the seccomp filter refuses it for good afterwards). The nsfs file is opened
// literally: a symlink there could point at the host's namespace.
struct netns {
  int net, user;
};

static struct netns open_netns(const char* path) {
  struct netns ns;
  ns.net = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (ns.net < 0) die_errno("cannot open network namespace", path);
  int type = ioctl(ns.net, NS_GET_NSTYPE);
  if (type != CLONE_NEWNET) die("--netns names something that is not a network namespace", path);
  ns.user = ioctl(ns.net, NS_GET_USERNS);
  if (ns.user < 0) die_errno("cannot get the owner of network namespace", path);
  struct stat owner, host;
  if (fstat(ns.user, &owner) < 0 || stat("/proc/self/ns/user", &host) < 0) die_errno("fstat", path);
  if (owner.st_ino == host.st_ino && owner.st_dev == host.st_dev)
    die("this network namespace belongs to the host's user namespace, where CAP_NET_ADMIN reaches every namespace; create it inside a user namespace of its own", path);
  return ns;
}

static void join_netns(struct netns ns, const char* path) {
  if (setns(ns.user, CLONE_NEWUSER) < 0) die_errno("cannot join the user namespace owning", path);
  if (setns(ns.net, CLONE_NEWNET) < 0) die_errno("cannot join network namespace", path);
  close(ns.user);
  close(ns.net);
}

static int last_cap(void) {
  int last = CAP_LAST_CAP;
  FILE* f = fopen("/proc/sys/kernel/cap_last_cap", "r");
  if (f) {
    if (fscanf(f, "%d", &last) != 1) last = CAP_LAST_CAP;
    fclose(f);
  }
  return last;
}

static void drop_caps(int keep_net_admin, int last) {
  // As root, lock uid 0 out of regaining capabilities on exec; as anyone else this is refused
  // and there is nothing to regain.
  if (prctl(PR_SET_SECUREBITS, SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP |
                                  SECBIT_NO_SETUID_FIXUP_LOCKED | SECBIT_KEEP_CAPS_LOCKED) < 0 &&
      errno != EPERM)
    die_errno("prctl(PR_SET_SECUREBITS)", NULL);
  for (int c = 0; c <= last; c++) {
    if (keep_net_admin && c == CAP_NET_ADMIN) continue;
    if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 && errno != EINVAL && errno != EPERM) die_errno("prctl(PR_CAPBSET_DROP)", NULL);
  }
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL) die_errno("prctl(PR_CAP_AMBIENT_CLEAR_ALL)", NULL);
  struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct data[2];
  memset(data, 0, sizeof data);
  if (keep_net_admin) {
    // Kept through exec as an ambient capability: it must be permitted and inheritable first.
    data[0].effective = data[0].permitted = data[0].inheritable = 1U << CAP_NET_ADMIN;
  }
  if (syscall(SYS_capset, &hdr, data) < 0) {
    if (keep_net_admin) die_errno("capset (keeping net_admin needs it to be held)", NULL);
    die_errno("capset", NULL);
  }
  if (keep_net_admin && prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_NET_ADMIN, 0, 0) < 0)
    die_errno("prctl(PR_CAP_AMBIENT_RAISE, net_admin)", NULL);
}

int main(int argc, char** argv) {
  static struct rule rules[MAX_RULES];
  int n = 0, keep_net_admin = 0, i = 1;
  const char* netns = NULL;
  if (argc == 2 && strcmp(argv[1], "--abi") == 0) {
    printf("%d\n", landlock_abi());
    return 0;
  }
  for (; i < argc; i++) {
    const char* a = argv[i];
    if (strcmp(a, "--") == 0) {
      i++;
      break;
    }
    if (strcmp(a, "--keep-cap") == 0) {
      if (i + 1 >= argc) die("--keep-cap needs a capability name", NULL);
      if (strcmp(argv[++i], "net_admin") != 0) die("--keep-cap: only net_admin may be kept, not", argv[i]);
      keep_net_admin = 1;
      continue;
    }
    if (strcmp(a, "--netns") == 0) {
      if (i + 1 >= argc) die("--netns needs the path of a bound namespace, e.g. /run/netns/NAME", NULL);
      if (netns != NULL) die("--netns given twice: a process lives in one network namespace", NULL);
      netns = argv[++i];
      if (netns[0] != '/') die("--netns path must be absolute", netns);
      continue;
    }
    enum kind k;
    if (strcmp(a, "--ro") == 0) k = RO;
    else if (strcmp(a, "--rx") == 0) k = RX;
    else if (strcmp(a, "--rw") == 0) k = RW;
    else if (strcmp(a, "--ro-file") == 0) k = RO_FILE;
    else if (strcmp(a, "--rw-file") == 0) k = RW_FILE;
    else if (strcmp(a, "--sock-dir") == 0) k = SOCK_DIR;
    else if (strcmp(a, "--rw-tree") == 0) k = RW_TREE;
    else die("unknown option (expected --ro, --rx, --rw, --ro-file, --rw-file, --sock-dir, --rw-tree, --netns, --keep-cap, --abi or --)", a);
    if (i + 1 >= argc) die("option needs a path", a);
    const char* p = argv[++i];
    if (p[0] != '/') die("rule paths must be absolute", p);
    if (n == MAX_RULES) die("too many rules", NULL);
    rules[n].kind = k;
    rules[n].path = p;
    n++;
  }
  if (i >= argc) die("nothing to run: give -- PROG ARG...", NULL);

  int last = last_cap();
  struct netns ns = {-1, -1};
  if (netns != NULL) ns = open_netns(netns);
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) die_errno("prctl(PR_SET_NO_NEW_PRIVS)", NULL);
  // Rules first: opening rule paths may need the capabilities dropped below.
  int abi = landlock_abi();
  if (abi >= 1) apply_landlock(rules, n, abi);
  else fprintf(stderr, "ringside-confine: this kernel has no Landlock; filesystem and signal confinement are off, capabilities are still dropped\n");
  if (netns != NULL) join_netns(ns, netns);
  drop_caps(keep_net_admin, last);
  apply_seccomp(getpid());
  execv(argv[i], &argv[i]);
  die_errno("cannot exec", argv[i]);
  return 126;
}
