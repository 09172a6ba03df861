import { availableParallelism } from 'node:os';

// How every Bunker process is started: the V8 flags and the environment node gets. bin/bunker's first
// line carries NODE_FLAGS and LAUNCH_ENV and its body sizes the thread pool (a test checks all three);
// the control plane starts its workers with NODE_FLAGS and launchEnv(). V8 reads heap flags, glibc its
// malloc settings and libuv its pool size only when each starts: setting them later misses what was
// set up before. `node bench/launch-settings.mjs` stores the 1.1 GB benchmark tar with node's
// defaults, with each setting alone and as Bunker starts.
//
// --initial-old-space-size=64: the command line loads zod, kysely and every engine before it backs
// up, which leaves ~8.5 MB of old space at start. V8 then sets its first old-generation limit from
// that small heap and restarts incremental marking every few tens of milliseconds while backups
// allocate buffers (70–113 mark-compacts in a 1.1 GB mount's first backup). With the old space
// allowed to reach 64 MB before marking: 34–36, and the backup took 8.7–9.1 s instead of 9.4–13.2 s
// (side by side, docs/design/repository-format.md, "Heap size and mark-compacts").
export const NODE_FLAGS: readonly string[] = ['--initial-old-space-size=64'];

// MALLOC_ARENA_MAX=1: blobs are allocated on thread-pool threads and freed on the main thread, and
// glibc gives each thread an arena of its own; memory freed into one arena is not reused by another.
// The codec caps arenas when it loads (mallopt), but threads that allocated earlier keep theirs.
// Capped from the start, the benchmark store peaked at 186 MB instead of 249 MB, at the same speed
// (launch-settings.mjs, medians of 3; docs/design/repository-format.md, "Memory").
export const LAUNCH_ENV: Readonly<Record<string, string>> = { MALLOC_ARENA_MAX: '1' };

// UV_THREADPOOL_SIZE: libuv's pool runs file I/O and the codec's hashing, compression and
// encryption, and has 4 threads whatever the machine. On 2 cores, 4 pool threads plus the main
// thread kept more threads runnable than cores: the benchmark store took 2.38 s with 2 threads and
// 2.66 s with 4 (launch-settings.mjs); a mount's first backup 3.90–4.17 s and 4.41–4.87 s (ad hoc,
// alternated). The codec still runs at most min(4, cores) blobs at once (native-codec.ts), so I/O
// keeps a thread on bigger machines, and a single core gets two threads so reads overlap compression.
/** The pool size a Bunker process starts with unless UV_THREADPOOL_SIZE says otherwise. */
export function threadPoolSize(): number {
  return Math.max(2, availableParallelism());
}

/** The environment a Bunker process is started with: LAUNCH_ENV, and the pool size (the caller's, if set). */
export function launchEnv(env: NodeJS.ProcessEnv = process.env): Record<string, string> {
  return { ...LAUNCH_ENV, UV_THREADPOOL_SIZE: env.UV_THREADPOOL_SIZE ?? String(threadPoolSize()) };
}

/** bin/bunker's first line: `env -S` sets LAUNCH_ENV, then runs node with NODE_FLAGS (bin/bunker sizes the pool itself). */
export const SHEBANG = `#!/usr/bin/env -S ${Object.entries(LAUNCH_ENV).map(([k, v]) => `${k}=${v}`).join(' ')} node ${NODE_FLAGS.join(' ')}`;
