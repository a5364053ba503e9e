{
  "targets": [
    {
      "target_name": "ringside",
      "sources": ["src/addon.cc", "src/memory.cc", "src/fds.cc", "src/watch.cc", "src/sandbox.cc", "src/tap.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags_cc": ["-std=c++17", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    },
    {
      "target_name": "ringside-confine",
      "type": "executable",
      "sources": ["confine/confine.c"],
      "cflags": ["-std=gnu11", "-O2", "-Wall", "-Wextra"]
    }
  ]
}
