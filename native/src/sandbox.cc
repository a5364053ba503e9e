// Privilege dropping for driver domains: no_new_privs and a seccomp deny-list applied to every
// thread (TSYNC), so libuv's threadpool is confined too. A denied call fails with EPERM rather
// than killing the process, so a driver domain that trips it logs a clear error.
#include "common.h"
#include "../seccomp-roles.h"
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

Napi::Value NoNewPrivs(const Napi::CallbackInfo& info) {
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) ThrowErrno(info.Env(), "prctl(PR_SET_NO_NEW_PRIVS)");
  return info.Env().Undefined();
}

// seccompRole(name): the role's table (native/seccomp-roles.h) returns EPERM from now on, in
// every thread; returns how many syscalls it denies. The roles are fixed in C so that the list a
// process gets cannot be assembled from strings at run time.
Napi::Value ApplySeccompRole(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) throw Napi::TypeError::New(env, "seccompRole: argument must be a role name");
  std::string name = info[0].As<Napi::String>().Utf8Value();
  const SeccompRole* role = nullptr;
  for (const SeccompRole& r : kRoles)
    if (name == r.name) role = &r;
  if (role == nullptr) throw Napi::Error::New(env, "seccompRole: unknown role '" + name + "'; roles are in native/seccomp-roles.h");
  std::vector<long> nrs(role->denied, role->denied + role->count);
  bool socketExceptUnix = role->socketExceptUnix != 0;
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
  return Napi::Number::New(env, (double)(nrs.size() + (socketExceptUnix ? 1 : 0)));
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
  exports.Set("seccompRole", Napi::Function::New(env, ApplySeccompRole));
  exports.Set("sandboxStatus", Napi::Function::New(env, SandboxStatus));
  exports.Set("setUndumpable", Napi::Function::New(env, SetUndumpable));
}

}  // namespace ringside
