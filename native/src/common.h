// Shared helpers for the ringside addon: every failing syscall becomes a JS Error whose
// `code` is the errno name (EACCES, EAGAIN, ...) and whose message names the call.
#pragma once
#include <napi.h>
#include <cerrno>
#include <cstring>
#include <string>

namespace ringside {

inline Napi::Error ErrnoError(Napi::Env env, const char* what, int err) {
  const char* name = strerrorname_np(err);
  std::string msg = std::string(what) + ": " + (name ? name : "E?") + " (" + strerror(err) + ")";
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("code", Napi::String::New(env, name ? name : "EUNKNOWN"));
  e.Set("errno", Napi::Number::New(env, err));
  e.Set("syscall", Napi::String::New(env, what));
  return e;
}

[[noreturn]] inline void ThrowErrno(Napi::Env env, const char* what, int err = errno) {
  throw ErrnoError(env, what, err);
}

inline int ArgFd(const Napi::CallbackInfo& info, size_t i) {
  if (info.Length() <= i || !info[i].IsNumber())
    throw Napi::TypeError::New(info.Env(), "argument " + std::to_string(i) + " must be a file descriptor (number)");
  int fd = info[i].As<Napi::Number>().Int32Value();
  if (fd < 0) throw Napi::RangeError::New(info.Env(), "file descriptor must be >= 0");
  return fd;
}

inline uint64_t ArgSize(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (info.Length() <= i || !info[i].IsNumber())
    throw Napi::TypeError::New(info.Env(), std::string(name) + " must be a number");
  double v = info[i].As<Napi::Number>().DoubleValue();
  if (!(v >= 0) || v > 9007199254740991.0 || v != (double)(uint64_t)v)
    throw Napi::RangeError::New(info.Env(), std::string(name) + " must be a non-negative integer");
  return (uint64_t)v;
}

void InitMemory(Napi::Env env, Napi::Object exports);
void InitFds(Napi::Env env, Napi::Object exports);
void InitWatch(Napi::Env env, Napi::Object exports);
void InitSandbox(Napi::Env env, Napi::Object exports);
void InitTap(Napi::Env env, Napi::Object exports);

}  // namespace ringside
