// ringside-confine: confines a driver domain before its first instruction runs, then execs it.
//
// Why a launcher and not a call from the domain itself: Landlock's restrict_self binds only the
// calling thread, and Node has started V8 and libuv threads before any of our code runs. A
// ruleset enforced here, in a single-threaded process, is inherited by everything the exec'd
// program ever creates. Capabilities are dropped here for the same reason.
//
//   ringside-confine [--ro PATH]... [--rx PATH]... [--rw PATH]... [--keep-cap NAME]... -- PROG ARG...
//
//   --ro PATH   read files (and list directories) beneath PATH
//   --rx PATH   as --ro, and execute
//   --rw PATH   a file: read, write, truncate (and device ioctls); a directory: everything beneath
//   --keep-cap  net_admin only (a TAP uplink needs it); every other capability is dropped
//
// Everything else on the filesystem is refused (EACCES), TCP bind/connect is refused, and the
// process can signal nobody outside its own Landlock domain, so a driver domain can neither kill
// hv nor its sibling domains. Capabilities go from the bounding, inheritable, permitted and
// effective sets, and SECBIT_NOROOT stops uid 0 from getting them back on exec. The kernel's
// Landlock ABI decides which of these rights it can enforce; a kernel without Landlock gets the
// capability drop only and a line on stderr saying so.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/securebits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

enum kind { RO, RX, RW };
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
    default: a = is_dir ? handled : (FS_READ_FILE | FS_WRITE_FILE | FS_TRUNCATE | FS_IOCTL_DEV); break;
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
    int fd = open(rules[i].path, O_PATH | O_CLOEXEC);
    if (fd < 0) {
      // A path that does not exist cannot be reached either: nothing to allow.
      if (errno == ENOENT) continue;
      die_errno("cannot open rule path", rules[i].path);
    }
    struct stat st;
    if (fstat(fd, &st) < 0) die_errno("fstat", rules[i].path);
    struct path_beneath_attr pb = {rights(&rules[i], S_ISDIR(st.st_mode), attr.handled_access_fs), fd};
    if (pb.allowed_access != 0 && syscall(SYS_landlock_add_rule, rs, LL_RULE_PATH_BENEATH, &pb, 0) < 0)
      die_errno("landlock_add_rule", rules[i].path);
    close(fd);
  }
  if (syscall(SYS_landlock_restrict_self, rs, 0) < 0) die_errno("landlock_restrict_self", NULL);
  close(rs);
}

// Read before Landlock is on: /proc may not be among the rules.
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
    enum kind k;
    if (strcmp(a, "--ro") == 0) k = RO;
    else if (strcmp(a, "--rx") == 0) k = RX;
    else if (strcmp(a, "--rw") == 0) k = RW;
    else die("unknown option (expected --ro, --rx, --rw, --keep-cap or --)", a);
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
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) die_errno("prctl(PR_SET_NO_NEW_PRIVS)", NULL);
  // Rules first: opening rule paths may need the capabilities dropped below.
  int abi = landlock_abi();
  if (abi >= 1) apply_landlock(rules, n, abi);
  else fprintf(stderr, "ringside-confine: this kernel has no Landlock; filesystem and signal confinement are off, capabilities are still dropped\n");
  drop_caps(keep_net_admin, last);
  execv(argv[i], &argv[i]);
  die_errno("cannot exec", argv[i]);
  return 126;
}
