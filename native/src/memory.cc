// Shared memory: memfds, mappings exposed as external ArrayBuffers, and cross-process futexes.
// A mapping is released either explicitly (munmap detaches the ArrayBuffer first, so JS can never
// touch freed pages) or by the GC finalizer, whichever comes first.
#include "common.h"
#include <sys/stat.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <linux/futex.h>
#include <fcntl.h>
#include <unistd.h>
#include <climits>
#include <ctime>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace ringside {
namespace {

struct Mapping {
  void* addr;
  size_t len;
  bool live;
};

std::mutex g_lock;
std::unordered_map<void*, Mapping*> g_maps;

void Finalize(Napi::Env, void*, Mapping* m) {
  std::lock_guard<std::mutex> g(g_lock);
  if (m->live) {
    munmap(m->addr, m->len);
    g_maps.erase(m->addr);
  }
  delete m;
}

Napi::ArrayBuffer Expose(Napi::Env env, void* addr, size_t len) {
  Mapping* m = new Mapping{addr, len, true};
  {
    std::lock_guard<std::mutex> g(g_lock);
    g_maps[addr] = m;
  }
  return Napi::ArrayBuffer::New(env, addr, len, Finalize, m);
}

const size_t kPage = 4096;

// memfdCreate(name, size) -> fd. Sealing is allowed so a producer can later freeze a frame's size.
Napi::Value MemfdCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name = info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "ringside";
  uint64_t size = ArgSize(info, 1, "size");
  int fd = memfd_create(name.c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) ThrowErrno(env, "memfd_create");
  if (ftruncate(fd, (off_t)size) < 0) {
    int e = errno;
    close(fd);
    ThrowErrno(env, "ftruncate", e);
  }
  // The size of a frame never changes once created; sealing it stops a peer holding the
  // descriptor from shrinking it under our mapping (which would SIGBUS us).
  fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW);
  // Owner read-only: a read-only grant hands out an O_RDONLY descriptor, and without this a
  // grantee could reopen it read-write through /proc/self/fd. Descriptors opened read-write
  // (the one returned here) and their mappings are unaffected; a process with
  // CAP_DAC_OVERRIDE still could, which is why confined domains have no capabilities.
  // A confined domain's seccomp filter refuses fchmod; it never hands a memfd out read-only.
  if (fchmod(fd, 0400) < 0 && errno != EPERM) {
    int e = errno;
    close(fd);
    ThrowErrno(env, "fchmod", e);
  }
  return Napi::Number::New(env, fd);
}

// mmap(fd, length, writable, offset=0) -> ArrayBuffer over MAP_SHARED memory.
Napi::Value Mmap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0);
  uint64_t len = ArgSize(info, 1, "length");
  bool writable = info.Length() > 2 && info[2].ToBoolean();
  uint64_t off = info.Length() > 3 && !info[3].IsUndefined() ? ArgSize(info, 3, "offset") : 0;
  if (len == 0) throw Napi::RangeError::New(env, "mmap: length must be > 0");
  if (off % kPage) throw Napi::RangeError::New(env, "mmap: offset must be page aligned");
  int prot = PROT_READ | (writable ? PROT_WRITE : 0);
  void* p = mmap(nullptr, len, prot, MAP_SHARED, fd, (off_t)off);
  if (p == MAP_FAILED) ThrowErrno(env, "mmap");
  return Expose(env, p, len);
}

// mmapFrames(fds[], writable) -> one contiguous ArrayBuffer of fds.length pages, one frame per
// descriptor, the way a multi-page ring is mapped at consecutive virtual addresses.
Napi::Value MmapFrames(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsArray()) throw Napi::TypeError::New(env, "mmapFrames: first argument must be an array of fds");
  Napi::Array arr = info[0].As<Napi::Array>();
  bool writable = info.Length() > 1 && info[1].ToBoolean();
  uint32_t n = arr.Length();
  if (n == 0 || n > 4096) throw Napi::RangeError::New(env, "mmapFrames: need 1..4096 frames");
  std::vector<int> fds(n);
  for (uint32_t i = 0; i < n; i++) {
    Napi::Value v = arr[i];
    if (!v.IsNumber() || v.As<Napi::Number>().Int32Value() < 0)
      throw Napi::TypeError::New(env, "mmapFrames: every element must be a file descriptor");
    fds[i] = v.As<Napi::Number>().Int32Value();
  }
  size_t len = (size_t)n * kPage;
  void* base = mmap(nullptr, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (base == MAP_FAILED) ThrowErrno(env, "mmap");
  int prot = PROT_READ | (writable ? PROT_WRITE : 0);
  for (uint32_t i = 0; i < n; i++) {
    void* want = (char*)base + (size_t)i * kPage;
    void* p = mmap(want, kPage, prot, MAP_SHARED | MAP_FIXED, fds[i], 0);
    if (p == MAP_FAILED) {
      int e = errno;
      munmap(base, len);
      ThrowErrno(env, "mmap", e);
    }
  }
  return Expose(env, base, len);
}

// munmap(arrayBuffer): detach first so every view of it becomes zero-length, then unmap.
Napi::Value Munmap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsArrayBuffer()) throw Napi::TypeError::New(env, "munmap: argument must be an ArrayBuffer from mmap");
  Napi::ArrayBuffer ab = info[0].As<Napi::ArrayBuffer>();
  void* addr = ab.Data();
  std::lock_guard<std::mutex> g(g_lock);
  auto it = g_maps.find(addr);
  if (addr == nullptr || it == g_maps.end() || !it->second->live)
    throw Napi::Error::New(env, "munmap: ArrayBuffer is not a live mapping made by this addon");
  Mapping* m = it->second;
  ab.Detach();
  munmap(m->addr, m->len);
  m->live = false;
  g_maps.erase(it);
  return env.Undefined();
}

Napi::Value IsMapped(const Napi::CallbackInfo& info) {
  if (!info[0].IsArrayBuffer()) return Napi::Boolean::New(info.Env(), false);
  void* addr = info[0].As<Napi::ArrayBuffer>().Data();
  std::lock_guard<std::mutex> g(g_lock);
  return Napi::Boolean::New(info.Env(), addr && g_maps.count(addr));
}

uint32_t* FutexWord(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsArrayBuffer()) throw Napi::TypeError::New(env, "futex: first argument must be an ArrayBuffer");
  Napi::ArrayBuffer ab = info[0].As<Napi::ArrayBuffer>();
  uint64_t off = ArgSize(info, 1, "byteOffset");
  if (off % 4 || off + 4 > ab.ByteLength()) throw Napi::RangeError::New(env, "futex: byteOffset must be 4-aligned and inside the buffer");
  return (uint32_t*)((char*)ab.Data() + off);
}

// futexWait(ab, byteOffset, expected, timeoutMs) -> "ok" | "not-equal" | "timed-out".
// A shared (non-private) futex, so a peer process mapping the same frame can wake us; this
// blocks the JS thread, which is what a spin-then-sleep consumer wants.
Napi::Value FutexWait(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t* w = FutexWord(info);
  uint32_t expected = info[2].As<Napi::Number>().Uint32Value();
  double ms = info.Length() > 3 && info[3].IsNumber() ? info[3].As<Napi::Number>().DoubleValue() : -1;
  struct timespec ts, *tp = nullptr;
  if (ms >= 0) {
    ts.tv_sec = (time_t)(ms / 1000);
    ts.tv_nsec = (long)((ms - ts.tv_sec * 1000.0) * 1e6);
    tp = &ts;
  }
  long r = syscall(SYS_futex, w, FUTEX_WAIT, expected, tp, nullptr, 0);
  if (r == 0) return Napi::String::New(env, "ok");
  if (errno == EAGAIN) return Napi::String::New(env, "not-equal");
  if (errno == ETIMEDOUT) return Napi::String::New(env, "timed-out");
  if (errno == EINTR) return Napi::String::New(env, "ok");
  ThrowErrno(env, "futex");
}

Napi::Value FutexWake(const Napi::CallbackInfo& info) {
  uint32_t* w = FutexWord(info);
  int n = info.Length() > 2 && info[2].IsNumber() ? info[2].As<Napi::Number>().Int32Value() : INT_MAX;
  long r = syscall(SYS_futex, w, FUTEX_WAKE, n, nullptr, nullptr, 0);
  if (r < 0) ThrowErrno(info.Env(), "futex");
  return Napi::Number::New(info.Env(), (double)r);
}

}  // namespace

void InitMemory(Napi::Env env, Napi::Object exports) {
  exports.Set("memfdCreate", Napi::Function::New(env, MemfdCreate));
  exports.Set("mmap", Napi::Function::New(env, Mmap));
  exports.Set("mmapFrames", Napi::Function::New(env, MmapFrames));
  exports.Set("munmap", Napi::Function::New(env, Munmap));
  exports.Set("isMapped", Napi::Function::New(env, IsMapped));
  exports.Set("futexWait", Napi::Function::New(env, FutexWait));
  exports.Set("futexWake", Napi::Function::New(env, FutexWake));
  exports.Set("PAGE_SIZE", Napi::Number::New(env, kPage));
}

}  // namespace ringside
