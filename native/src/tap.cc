// TAP devices: open /dev/net/tun with TUNSETIFF, optional virtio-net headers so GSO frames pass
// whole, and the offload flags that let the kernel hand us TSO frames.
#include "common.h"
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <sys/ioctl.h>
#include <unistd.h>

namespace ringside {
namespace {

// tapOpen(name, { vnetHdr }) -> { fd, name }
Napi::Value TapOpen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name = info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
  if (name.size() >= IFNAMSIZ) throw Napi::RangeError::New(env, "tapOpen: interface name longer than 15 characters");
  bool vnet = false;
  if (info.Length() > 1 && info[1].IsObject()) vnet = info[1].As<Napi::Object>().Get("vnetHdr").ToBoolean();
  int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) ThrowErrno(env, "open(/dev/net/tun)");
  struct ifreq ifr = {};
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI | (vnet ? IFF_VNET_HDR : 0);
  strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
    int e = errno;
    close(fd);
    ThrowErrno(env, "ioctl(TUNSETIFF)", e);
  }
  if (vnet) {
    int sz = 12;  // virtio_net_hdr_v1 (with num_buffers)
    if (ioctl(fd, TUNSETVNETHDRSZ, &sz) < 0) {
      int e = errno;
      close(fd);
      ThrowErrno(env, "ioctl(TUNSETVNETHDRSZ)", e);
    }
  }
  Napi::Object o = Napi::Object::New(env);
  o.Set("fd", Napi::Number::New(env, fd));
  o.Set("name", Napi::String::New(env, ifr.ifr_name));
  return o;
}

// tapSetOffload(fd, { csum, tso4, tso6 })
Napi::Value TapSetOffload(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0);
  unsigned flags = 0;
  if (info.Length() > 1 && info[1].IsObject()) {
    Napi::Object o = info[1].As<Napi::Object>();
    if (o.Get("csum").ToBoolean()) flags |= TUN_F_CSUM;
    if (o.Get("tso4").ToBoolean()) flags |= TUN_F_TSO4;
    if (o.Get("tso6").ToBoolean()) flags |= TUN_F_TSO6;
  }
  if (ioctl(fd, TUNSETOFFLOAD, flags) < 0) ThrowErrno(env, "ioctl(TUNSETOFFLOAD)");
  return env.Undefined();
}

}  // namespace

void InitTap(Napi::Env env, Napi::Object exports) {
  exports.Set("tapOpen", Napi::Function::New(env, TapOpen));
  exports.Set("tapSetOffload", Napi::Function::New(env, TapSetOffload));
}

}  // namespace ringside
