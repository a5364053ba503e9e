// Privilege dropping for driver domains: no_new_privs and a seccomp deny-list applied to every
// thread (TSYNC), so libuv's threadpool is confined too. A denied call fails with EPERM rather
// than killing the process, so a driver domain that trips it logs a clear error.
#include "common.h"
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <vector>

namespace ringside {
namespace {

struct Named { const char* name; long nr; };

const Named kSyscalls[] = {
    {"execve", SYS_execve}, {"execveat", SYS_execveat}, {"ptrace", SYS_ptrace},
    {"mount", SYS_mount}, {"umount2", SYS_umount2}, {"pivot_root", SYS_pivot_root},
    {"chroot", SYS_chroot}, {"kexec_load", SYS_kexec_load}, {"init_module", SYS_init_module},
    {"finit_module", SYS_finit_module}, {"delete_module", SYS_delete_module},
    {"process_vm_readv", SYS_process_vm_readv}, {"process_vm_writev", SYS_process_vm_writev},
    {"bpf", SYS_bpf}, {"perf_event_open", SYS_perf_event_open}, {"keyctl", SYS_keyctl},
    {"add_key", SYS_add_key}, {"request_key", SYS_request_key}, {"unshare", SYS_unshare},
    {"setns", SYS_setns}, {"socket", SYS_socket}, {"connect", SYS_connect}, {"bind", SYS_bind},
    {"mkdir", SYS_mkdir}, {"mkdirat", SYS_mkdirat}, {"unlink", SYS_unlink}, {"unlinkat", SYS_unlinkat},
    {"rename", SYS_rename}, {"renameat", SYS_renameat}, {"renameat2", SYS_renameat2},
    {"chmod", SYS_chmod}, {"fchmodat", SYS_fchmodat}, {"chown", SYS_chown}, {"fchownat", SYS_fchownat},
    {"symlink", SYS_symlink}, {"symlinkat", SYS_symlinkat}, {"link", SYS_link}, {"linkat", SYS_linkat},
    {"setuid", SYS_setuid}, {"setgid", SYS_setgid}, {"reboot", SYS_reboot}, {"swapon", SYS_swapon},
    {"swapoff", SYS_swapoff}, {"settimeofday", SYS_settimeofday}, {"clock_settime", SYS_clock_settime},
};

Napi::Value NoNewPrivs(const Napi::CallbackInfo& info) {
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) ThrowErrno(info.Env(), "prctl(PR_SET_NO_NEW_PRIVS)");
  return info.Env().Undefined();
}

// seccompDeny(names: string[]): every named syscall returns EPERM from now on, in every thread.
// "socket-except-unix" is socket(2) for every family but AF_UNIX: a driver domain that listens for
// vhost-user frontends keeps Unix sockets (Landlock confines where they are bound) and no other.
Napi::Value SeccompDeny(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsArray()) throw Napi::TypeError::New(env, "seccompDeny: argument must be an array of syscall names");
  Napi::Array arr = info[0].As<Napi::Array>();
  std::vector<long> nrs;
  bool socketExceptUnix = false;
  for (uint32_t i = 0; i < arr.Length(); i++) {
    Napi::Value v = arr[i];
    std::string n = v.ToString().Utf8Value();
    if (n == "socket-except-unix") {
      socketExceptUnix = true;
      continue;
    }
    long nr = -1;
    for (const Named& s : kSyscalls)
      if (n == s.name) nr = s.nr;
    if (nr < 0) throw Napi::Error::New(env, "seccompDeny: unknown syscall '" + n + "'; known: see native/src/sandbox.cc");
    nrs.push_back(nr);
  }
  std::vector<sock_filter> f;
  f.push_back(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)));
  f.push_back(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0));
  f.push_back(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS));
  f.push_back(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)));
  if (socketExceptUnix) {
    // not socket(2): on to the list with nr still loaded; socket(AF_UNIX, ...): allowed
    f.push_back(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_socket, 0, 4));
    f.push_back(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0])));
    f.push_back(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AF_UNIX, 0, 1));
    f.push_back(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
    f.push_back(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)));
  }
  for (long nr : nrs) {
    f.push_back(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)nr, 0, 1));
    f.push_back(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)));
  }
  f.push_back(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
  struct sock_fprog prog = {(unsigned short)f.size(), f.data()};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) ThrowErrno(env, "prctl(PR_SET_NO_NEW_PRIVS)");
  if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &prog) != 0)
    ThrowErrno(env, "seccomp");
  return env.Undefined();
}

// setUndumpable(): no core dumps, and /proc/<pid>/mem, /fd and ptrace need CAP_SYS_PTRACE even
// from the same uid. hv, dom0 and xenstored hold every domain's memory or the store; a domain
// running as the same uid must not reach them through /proc.
Napi::Value SetUndumpable(const Napi::CallbackInfo& info) {
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) ThrowErrno(info.Env(), "prctl(PR_SET_DUMPABLE)");
  return info.Env().Undefined();
}

Napi::Value SandboxStatus(const Napi::CallbackInfo& info) {
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("noNewPrivs", Napi::Boolean::New(info.Env(), prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1));
  o.Set("seccomp", Napi::Number::New(info.Env(), prctl(PR_GET_SECCOMP, 0, 0, 0, 0)));
  o.Set("dumpable", Napi::Boolean::New(info.Env(), prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == 1));
  return o;
}

}  // namespace

void InitSandbox(Napi::Env env, Napi::Object exports) {
  exports.Set("noNewPrivs", Napi::Function::New(env, NoNewPrivs));
  exports.Set("seccompDeny", Napi::Function::New(env, SeccompDeny));
  exports.Set("sandboxStatus", Napi::Function::New(env, SandboxStatus));
  exports.Set("setUndumpable", Napi::Function::New(env, SetUndumpable));
}

}  // namespace ringside
