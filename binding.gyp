{
  "targets": [
    {
      "target_name": "bunker_fs",
      "sources": ["native/bunker-fs.c"],
      "cflags": ["-O2", "-Wall"]
    }
  ]
}
