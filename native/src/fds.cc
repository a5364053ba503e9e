// Descriptors: re-opening read-only, eventfds, SOCK_SEQPACKET socketpairs, listening Unix sockets, and sendmsg/recvmsg
// carrying descriptors with SCM_RIGHTS. All descriptors are created close-on-exec; a child gets
// only what its spawner places in its stdio array.
#include "common.h"
#include <fcntl.h>
#include <linux/falloc.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>
#include <vector>

namespace ringside {
namespace {

const int kMaxFds = 64;

// reopen(fd, readOnly) -> a new descriptor for the same file. A read-only reopen of a memfd
// is how a read-only grant is handed over: the kernel then refuses PROT_WRITE on it.
Napi::Value Reopen(const Napi::CallbackInfo& info) {
  int fd = ArgFd(info, 0);
  bool ro = info.Length() > 1 && info[1].ToBoolean();
  std::string path = "/proc/self/fd/" + std::to_string(fd);
  int nfd = open(path.c_str(), (ro ? O_RDONLY : O_RDWR) | O_CLOEXEC);
  if (nfd < 0) ThrowErrno(info.Env(), "open");
  return Napi::Number::New(info.Env(), nfd);
}

Napi::Value Dup(const Napi::CallbackInfo& info) {
  int fd = ArgFd(info, 0);
  int nfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (nfd < 0) ThrowErrno(info.Env(), "dup");
  return Napi::Number::New(info.Env(), nfd);
}

Napi::Value Close(const Napi::CallbackInfo& info) {
  int fd = ArgFd(info, 0);
  if (close(fd) < 0 && errno != EINTR) ThrowErrno(info.Env(), "close");
  return info.Env().Undefined();
}

Napi::Value FdSize(const Napi::CallbackInfo& info) {
  struct stat st;
  if (fstat(ArgFd(info, 0), &st) < 0) ThrowErrno(info.Env(), "fstat");
  return Napi::Number::New(info.Env(), (double)st.st_size);
}

// fdAccessMode(fd) -> "r" | "w" | "rw": lets a receiver check what a peer really handed it.
Napi::Value FdAccessMode(const Napi::CallbackInfo& info) {
  int fl = fcntl(ArgFd(info, 0), F_GETFL);
  if (fl < 0) ThrowErrno(info.Env(), "fcntl");
  int acc = fl & O_ACCMODE;
  return Napi::String::New(info.Env(), acc == O_RDONLY ? "r" : acc == O_WRONLY ? "w" : "rw");
}

Napi::Value SetNonblock(const Napi::CallbackInfo& info) {
  int fd = ArgFd(info, 0);
  bool on = info.Length() < 2 || info[1].ToBoolean();
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, on ? (fl | O_NONBLOCK) : (fl & ~O_NONBLOCK)) < 0) ThrowErrno(info.Env(), "fcntl");
  return info.Env().Undefined();
}

Napi::Value EventfdCreate(const Napi::CallbackInfo& info) {
  int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd < 0) ThrowErrno(info.Env(), "eventfd");
  return Napi::Number::New(info.Env(), fd);
}

Napi::Value EventfdSignal(const Napi::CallbackInfo& info) {
  int fd = ArgFd(info, 0);
  uint64_t one = 1;
  // EAGAIN only when the counter is saturated, which already means "pending": nothing to add.
  if (write(fd, &one, 8) < 0 && errno != EAGAIN) ThrowErrno(info.Env(), "eventfd write");
  return info.Env().Undefined();
}

Napi::Value EventfdRead(const Napi::CallbackInfo& info) {
  int fd = ArgFd(info, 0);
  uint64_t v = 0;
  if (read(fd, &v, 8) < 0) {
    if (errno == EAGAIN) return Napi::Number::New(info.Env(), 0);
    ThrowErrno(info.Env(), "eventfd read");
  }
  return Napi::Number::New(info.Env(), (double)v);
}

Napi::Value SeqpacketPair(const Napi::CallbackInfo& info) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) < 0) ThrowErrno(info.Env(), "socketpair");
  Napi::Array a = Napi::Array::New(info.Env(), 2);
  a.Set(0u, Napi::Number::New(info.Env(), sv[0]));
  a.Set(1u, Napi::Number::New(info.Env(), sv[1]));
  return a;
}

// sendmsg(fd, data: Uint8Array, fds?: number[]) -> bytes sent; throws with code EAGAIN when full.
Napi::Value SendMsg(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0);
  if (!info[1].IsTypedArray()) throw Napi::TypeError::New(env, "sendmsg: data must be a Uint8Array");
  Napi::Uint8Array data = info[1].As<Napi::Uint8Array>();
  std::vector<int> fds;
  if (info.Length() > 2 && info[2].IsArray()) {
    Napi::Array arr = info[2].As<Napi::Array>();
    if (arr.Length() > (uint32_t)kMaxFds) throw Napi::RangeError::New(env, "sendmsg: too many descriptors");
    for (uint32_t i = 0; i < arr.Length(); i++) {
      Napi::Value v = arr[i];
      if (!v.IsNumber()) throw Napi::TypeError::New(env, "sendmsg: descriptors must be numbers");
      fds.push_back(v.As<Napi::Number>().Int32Value());
    }
  }
  struct iovec iov = {data.Data(), data.ByteLength()};
  struct msghdr msg = {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  std::vector<char> cbuf;
  if (!fds.empty()) {
    cbuf.assign(CMSG_SPACE(sizeof(int) * fds.size()), 0);
    msg.msg_control = cbuf.data();
    msg.msg_controllen = cbuf.size();
    struct cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  ssize_t r;
  do r = sendmsg(fd, &msg, MSG_NOSIGNAL); while (r < 0 && errno == EINTR);
  if (r < 0) ThrowErrno(env, "sendmsg");
  return Napi::Number::New(env, (double)r);
}

// recvmsg(fd, buf: Uint8Array, wait?: boolean) -> null when nothing is queued (EAGAIN), else
// { len, fds, truncated }. len 0 means the peer closed. Descriptors beyond kMaxFds are closed
// by the kernel (MSG_CTRUNC) and reported as truncated so the caller can drop the message.
// With wait on a blocking descriptor it sleeps for a message, up to the socket's SO_RCVTIMEO
// (setRecvTimeout), after which it returns null as for EAGAIN: hv's synchronous calls to hw.
Napi::Value RecvMsg(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0);
  if (!info[1].IsTypedArray()) throw Napi::TypeError::New(env, "recvmsg: buf must be a Uint8Array");
  Napi::Uint8Array buf = info[1].As<Napi::Uint8Array>();
  bool wait = info.Length() > 2 && info[2].ToBoolean();
  struct iovec iov = {buf.Data(), buf.ByteLength()};
  char cbuf[CMSG_SPACE(sizeof(int) * kMaxFds)];
  struct msghdr msg = {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = cbuf;
  msg.msg_controllen = sizeof(cbuf);
  ssize_t r;
  do r = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC | (wait ? 0 : MSG_DONTWAIT)); while (r < 0 && errno == EINTR);
  if (r < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return env.Null();
    if (errno == ECONNRESET) r = 0;
    else ThrowErrno(env, "recvmsg");
  }
  Napi::Array fds = Napi::Array::New(env);
  uint32_t k = 0;
  for (struct cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
      size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      int* p = (int*)CMSG_DATA(c);
      for (size_t i = 0; i < n; i++) fds.Set(k++, Napi::Number::New(env, p[i]));
    }
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("len", Napi::Number::New(env, (double)r));
  out.Set("fds", fds);
  out.Set("truncated", Napi::Boolean::New(env, (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0));
  return out;
}

// setRecvTimeout(fd, ms): SO_RCVTIMEO, so a blocking receive gives up (EAGAIN) instead of
// waiting forever on a peer that hangs.
Napi::Value SetRecvTimeout(const Napi::CallbackInfo& info) {
  int fd = ArgFd(info, 0);
  uint64_t ms = ArgSize(info, 1, "ms");
  struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
  if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0) ThrowErrno(info.Env(), "setsockopt(SO_RCVTIMEO)");
  return info.Env().Undefined();
}

// readFd / writeFd: one non-blocking read(2) / write(2) into caller-owned memory, so the data
// path (TAP frames, NBD) allocates nothing. Return null on EAGAIN.
Napi::Value ReadFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0);
  if (!info[1].IsTypedArray()) throw Napi::TypeError::New(env, "readFd: buf must be a Uint8Array");
  Napi::Uint8Array buf = info[1].As<Napi::Uint8Array>();
  ssize_t r;
  do r = read(fd, buf.Data(), buf.ByteLength()); while (r < 0 && errno == EINTR);
  if (r < 0) {
    if (errno == EAGAIN) return env.Null();
    ThrowErrno(env, "read");
  }
  return Napi::Number::New(env, (double)r);
}

Napi::Value WriteFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0);
  if (!info[1].IsTypedArray()) throw Napi::TypeError::New(env, "writeFd: buf must be a Uint8Array");
  Napi::Uint8Array buf = info[1].As<Napi::Uint8Array>();
  size_t len = buf.ByteLength();
  if (info.Length() > 2 && info[2].IsNumber()) {
    uint64_t l = ArgSize(info, 2, "length");
    if (l > len) throw Napi::RangeError::New(env, "writeFd: length exceeds buffer");
    len = l;
  }
  ssize_t r;
  do r = write(fd, buf.Data(), len); while (r < 0 && errno == EINTR);
  if (r < 0) {
    if (errno == EAGAIN) return env.Null();
    ThrowErrno(env, "write");
  }
  return Napi::Number::New(env, (double)r);
}

// punchHole(fd, offset, length): deallocates a byte range of a file, which then reads as zeroes
// (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE). What a discard asks of a raw image.
Napi::Value PunchHole(const Napi::CallbackInfo& info) {
  int fd = ArgFd(info, 0);
  uint64_t off = ArgSize(info, 1, "offset");
  uint64_t len = ArgSize(info, 2, "length");
  if (len > 0 && fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) < 0)
    ThrowErrno(info.Env(), "fallocate");
  return info.Env().Undefined();
}

// setParentDeathSignal(sig): a domain dies with its spawner, so a crashed hv never leaves
// orphan domains behind. Returns false if the parent is already gone.
Napi::Value SetParentDeathSignal(const Napi::CallbackInfo& info) {
  int sig = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : SIGKILL;
  pid_t parent = getppid();
  if (prctl(PR_SET_PDEATHSIG, sig) < 0) ThrowErrno(info.Env(), "prctl");
  return Napi::Boolean::New(info.Env(), getppid() == parent && parent != 1);
}

}  // namespace

// unixListen(path, backlog) -> a non-blocking listening SOCK_STREAM socket bound at `path`: a
// vhost-user backend's socket, which QEMU dials. The caller owns removing a stale file first.
// The sockaddr_un for `path`, or a RangeError naming the limit (sun_path is 108 bytes).
static struct sockaddr_un UnixAddr(const Napi::CallbackInfo& info, const char* what) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(env, std::string(what) + ": path must be a string");
  std::string path = info[0].As<Napi::String>().Utf8Value();
  struct sockaddr_un sa = {};
  sa.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof sa.sun_path)
    throw Napi::RangeError::New(env, std::string(what) + ": path must be 1.." + std::to_string(sizeof sa.sun_path - 1) + " bytes, got " + std::to_string(path.size()));
  memcpy(sa.sun_path, path.data(), path.size());
  return sa;
}

Napi::Value UnixListen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  struct sockaddr_un sa = UnixAddr(info, "unixListen");
  uint64_t backlog = info.Length() > 1 ? ArgSize(info, 1, "backlog") : 16;
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) ThrowErrno(env, "socket");
  if (bind(fd, (struct sockaddr*)&sa, sizeof sa) < 0 || listen(fd, (int)(backlog > 128 ? 128 : backlog)) < 0) {
    int e = errno;
    close(fd);
    ThrowErrno(env, "bind/listen", e);
  }
  return Napi::Number::New(env, fd);
}

// unixConnect(path) -> a connected stream socket (non-blocking once connected, close-on-exec).
// A Unix connect completes at once or fails (ECONNREFUSED, ENOENT, EAGAIN on a full backlog).
Napi::Value UnixConnect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  struct sockaddr_un sa = UnixAddr(info, "unixConnect");
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) ThrowErrno(env, "socket");
  int r;
  do r = connect(fd, (struct sockaddr*)&sa, sizeof sa); while (r < 0 && errno == EINTR);
  if (r < 0) {
    int e = errno;
    close(fd);
    ThrowErrno(env, "connect", e);
  }
  int fl = fcntl(fd, F_GETFL);
  fcntl(fd, F_SETFL, fl | O_NONBLOCK);
  return Napi::Number::New(env, fd);
}

// accept(fd) -> the next connection (non-blocking, close-on-exec), or null when none is queued.
Napi::Value Accept(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0);
  int c;
  do c = accept4(fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC); while (c < 0 && errno == EINTR);
  if (c < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ECONNABORTED) return env.Null();
    ThrowErrno(env, "accept4");
  }
  return Napi::Number::New(env, c);
}

void InitFds(Napi::Env env, Napi::Object exports) {
  exports.Set("reopen", Napi::Function::New(env, Reopen));
  exports.Set("dup", Napi::Function::New(env, Dup));
  exports.Set("close", Napi::Function::New(env, Close));
  exports.Set("fdSize", Napi::Function::New(env, FdSize));
  exports.Set("fdAccessMode", Napi::Function::New(env, FdAccessMode));
  exports.Set("setNonblock", Napi::Function::New(env, SetNonblock));
  exports.Set("eventfd", Napi::Function::New(env, EventfdCreate));
  exports.Set("eventfdSignal", Napi::Function::New(env, EventfdSignal));
  exports.Set("eventfdRead", Napi::Function::New(env, EventfdRead));
  exports.Set("seqpacketPair", Napi::Function::New(env, SeqpacketPair));
  exports.Set("sendmsg", Napi::Function::New(env, SendMsg));
  exports.Set("recvmsg", Napi::Function::New(env, RecvMsg));
  exports.Set("setRecvTimeout", Napi::Function::New(env, SetRecvTimeout));
  exports.Set("readFd", Napi::Function::New(env, ReadFd));
  exports.Set("writeFd", Napi::Function::New(env, WriteFd));
  exports.Set("setParentDeathSignal", Napi::Function::New(env, SetParentDeathSignal));
  exports.Set("punchHole", Napi::Function::New(env, PunchHole));
  exports.Set("unixListen", Napi::Function::New(env, UnixListen));
  exports.Set("accept", Napi::Function::New(env, Accept));
  exports.Set("unixConnect", Napi::Function::New(env, UnixConnect));
}

}  // namespace ringside
