// Watcher: a uv_poll_t on a descriptor that calls back into JS when it becomes readable. For an
// eventfd the counter is drained in C and handed to JS, so one wakeup costs one callback and no
// extra syscall from JS. Unreferenced by default: a watcher alone never keeps a domain alive.
#include "common.h"
#include <uv.h>
#include <unistd.h>
#include <set>

namespace ringside {
namespace {

class Watcher;
// Live watchers per process. When the environment is torn down (process exit, worker exit),
// every poll handle must stop before V8 goes away, or a late wakeup would call into a dead env.
std::set<Watcher*> g_live;
bool g_hooked = false;

class Watcher : public Napi::ObjectWrap<Watcher> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Watcher",
                       {InstanceMethod("pause", &Watcher::Pause), InstanceMethod("resume", &Watcher::Resume),
                        InstanceMethod("close", &Watcher::Close), InstanceMethod("ref", &Watcher::DoRef),
                        InstanceMethod("unref", &Watcher::DoUnref)});
  }

  // new Watcher(fd, mode: "eventfd" | "readable", callback)
  Watcher(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Watcher>(info) {
    Napi::Env env = info.Env();
    fd_ = ArgFd(info, 0);
    std::string mode = info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "";
    if (mode != "eventfd" && mode != "readable")
      throw Napi::TypeError::New(env, "Watcher: mode must be 'eventfd' or 'readable'");
    eventfd_ = mode == "eventfd";
    if (!info[2].IsFunction()) throw Napi::TypeError::New(env, "Watcher: callback must be a function");
    cb_ = Napi::Persistent(info[2].As<Napi::Function>());
    env_ = env;
    uv_loop_t* loop = nullptr;
    if (napi_get_uv_event_loop(env, &loop) != napi_ok) throw Napi::Error::New(env, "Watcher: no event loop");
    handle_ = new uv_poll_t;
    int r = uv_poll_init(loop, handle_, fd_);
    if (r != 0) {
      delete handle_;
      handle_ = nullptr;
      throw Napi::Error::New(env, std::string("uv_poll_init: ") + uv_strerror(r));
    }
    handle_->data = this;
    uv_unref((uv_handle_t*)handle_);
    Start();
    Ref();  // stay alive while polling, whatever JS holds
    g_live.insert(this);
    if (!g_hooked) {
      g_hooked = true;
      napi_add_env_cleanup_hook(env, [](void*) {
        for (Watcher* w : std::set<Watcher*>(g_live)) w->Release();
        g_live.clear();
      }, nullptr);
    }
  }

  ~Watcher() { g_live.erase(this); }

  /** Stops polling and frees the handle; safe to call twice and during env teardown. */
  void Release() {
    if (!handle_) return;
    Stop();
    handle_->data = nullptr;
    uv_close((uv_handle_t*)handle_, [](uv_handle_t* h) { delete (uv_poll_t*)h; });
    handle_ = nullptr;
    g_live.erase(this);
  }

 private:
  void Start() {
    if (!handle_ || active_) return;
    uv_poll_start(handle_, UV_READABLE, OnPoll);
    active_ = true;
  }
  void Stop() {
    if (!handle_ || !active_) return;
    uv_poll_stop(handle_);
    active_ = false;
  }

  static void OnPoll(uv_poll_t* h, int status, int events) {
    Watcher* self = (Watcher*)h->data;
    if (!self || !self->handle_) return;
    Napi::Env env = self->env_;
    Napi::HandleScope scope(env);
    double count = 1;
    if (self->eventfd_) {
      uint64_t v = 0;
      if (read(self->fd_, &v, 8) < 0) {
        if (errno == EAGAIN) return;  // another reader drained it first
        count = -1;
      } else {
        count = (double)v;
      }
    }
    if (status < 0) count = -1;
    try {
      self->cb_.MakeCallback(env.Global(), {Napi::Number::New(env, count)});
    } catch (const Napi::Error& e) {
      napi_fatal_exception(env, e.Value());
    }
  }

  Napi::Value Pause(const Napi::CallbackInfo& info) {
    Stop();
    return info.Env().Undefined();
  }
  Napi::Value Resume(const Napi::CallbackInfo& info) {
    Start();
    return info.Env().Undefined();
  }
  Napi::Value DoRef(const Napi::CallbackInfo& info) {
    if (handle_) uv_ref((uv_handle_t*)handle_);
    return info.Env().Undefined();
  }
  Napi::Value DoUnref(const Napi::CallbackInfo& info) {
    if (handle_) uv_unref((uv_handle_t*)handle_);
    return info.Env().Undefined();
  }
  // close(): stop and release the handle. The descriptor itself stays open: its owner closes it.
  Napi::Value Close(const Napi::CallbackInfo& info) {
    if (!handle_) return info.Env().Undefined();
    Release();
    cb_.Reset();
    Unref();
    return info.Env().Undefined();
  }

  int fd_ = -1;
  bool eventfd_ = false;
  bool active_ = false;
  uv_poll_t* handle_ = nullptr;
  Napi::FunctionReference cb_;
  Napi::Env env_ = nullptr;
};

}  // namespace

void InitWatch(Napi::Env env, Napi::Object exports) {
  exports.Set("Watcher", Watcher::Define(env));
}

}  // namespace ringside
