#include "common.h"

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) {
  ringside::InitMemory(env, exports);
  ringside::InitFds(env, exports);
  ringside::InitWatch(env, exports);
  ringside::InitSandbox(env, exports);
  ringside::InitTap(env, exports);
  return exports;
}

NODE_API_MODULE(ringside, InitAddon)
