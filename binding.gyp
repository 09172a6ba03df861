{
  "targets": [
    {
      "target_name": "bunker_fs",
      "sources": ["native/bunker-fs.c"],
      "cflags": ["-O2", "-Wall"]
    },
    {
      "target_name": "bunker_codec",
      "sources": ["native/bunker-codec.c"],
      "dependencies": ["node_modules/zstd-napi/deps/zstd.gyp:libzstd"],
      "cflags": ["-O3", "-Wall"]
    }
  ]
}
