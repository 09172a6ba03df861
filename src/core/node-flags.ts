// The V8 flags every Bunker process runs with. bin/bunker's first line carries them (a test keeps the
// two equal) and the control plane passes them to the workers it starts. V8 reads heap flags only
// when the process starts: v8.setFlagsFromString() later has no effect on them.
//
// --initial-old-space-size=64: the command line loads zod, kysely and every engine before it backs
// up, which leaves ~8.5 MB of old space at start. V8 then sets its first old-generation limit from
// that small heap and restarts incremental marking every few tens of milliseconds while backups
// allocate buffers (70–113 mark-compacts in a 1.1 GB mount's first backup). With the old space
// allowed to reach 64 MB before marking: 34–36, and the backup took 8.7–9.1 s instead of 9.4–13.2 s
// (side by side, docs/design/repository-format.md, "Heap size and mark-compacts").
export const NODE_FLAGS: readonly string[] = ['--initial-old-space-size=64'];
