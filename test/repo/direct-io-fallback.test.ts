// Packs are written with O_DIRECT (FsBackend → writeObject in native/bunker-fs.c), and so are restored
// files over 1 MiB (the files engine → writeAt). A file system that refuses the flag must still get
// its packs and files, through the page cache. No file system here refuses it,
// so a child process runs with an LD_PRELOAD shim that refuses it the two ways file systems do:
// SHIM_MODE=open: open() creates the file, then fails with EINVAL; the put must unlink that file.
// SHIM_MODE=write: open() succeeds, then write() or pwrite() on a descriptor still in O_DIRECT fails with EINVAL;
// the put must switch the descriptor to buffered writes and start the file over.
// Either way the pack must come back whole, with no temp file left behind, and a restore must write
// every file whole.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureBuilt, ROOT } from '../helpers/cli.js';

const SHIM = `
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
static void note(const char *what, const char *path) {
  const char *log = getenv("SHIM_LOG");
  FILE *f = log ? fopen(log, "a") : NULL;
  if (f) { fprintf(f, "%s %s\\n", what, path); fclose(f); }
}
static int refuse_at_open(void) { const char *m = getenv("SHIM_MODE"); return m && strcmp(m, "open") == 0; }
#define SHIM_OPEN(name)                                                      \\
  int name(const char *path, int flags, ...) {                              \\
    static int (*real)(const char *, int, ...);                             \\
    if (!real) real = (int (*)(const char *, int, ...))dlsym(RTLD_NEXT, #name); \\
    mode_t mode = 0;                                                        \\
    if (flags & O_CREAT) { va_list ap; va_start(ap, flags); mode = va_arg(ap, mode_t); va_end(ap); } \\
    if ((flags & O_DIRECT) && refuse_at_open()) {                           \\
      int fd = real(path, flags & ~O_DIRECT, mode);                         \\
      if (fd >= 0) close(fd);                                               \\
      note("open", path);                                                   \\
      errno = EINVAL;                                                       \\
      return -1;                                                            \\
    }                                                                       \\
    return real(path, flags, mode);                                         \\
  }
SHIM_OPEN(open)
SHIM_OPEN(open64)
static int refuse_write(int fd) {
  if (refuse_at_open() || !getenv("SHIM_MODE") || !(fcntl(fd, F_GETFL) & O_DIRECT)) return 0;
  char link[64], path[4096];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  ssize_t len = readlink(link, path, sizeof path - 1);
  path[len > 0 ? len : 0] = 0;
  note("write", path);
  errno = EINVAL;
  return 1;
}
ssize_t write(int fd, const void *buf, size_t n) {
  static ssize_t (*real)(int, const void *, size_t);
  if (!real) real = (ssize_t (*)(int, const void *, size_t))dlsym(RTLD_NEXT, "write");
  return refuse_write(fd) ? -1 : real(fd, buf, n);
}
#define SHIM_PWRITE(name)                                                    \
  ssize_t name(int fd, const void *buf, size_t n, off_t off) {              \
    static ssize_t (*real)(int, const void *, size_t, off_t);               \
    if (!real) real = (ssize_t (*)(int, const void *, size_t, off_t))dlsym(RTLD_NEXT, #name); \
    return refuse_write(fd) ? -1 : real(fd, buf, n, off);                   \
  }
SHIM_PWRITE(pwrite)
SHIM_PWRITE(pwrite64)
`;

const CHILD = `
import { FsBackend } from ${JSON.stringify(join(ROOT, 'dist/storage/index.js'))};
import { randomBytes, createHash } from 'node:crypto';
const fsb = new FsBackend(process.argv[2]);
const body = randomBytes(3 * (1 << 20) + 17);
await fsb.put('data/ab/pack', [body.subarray(0, 1000), body.subarray(1000)]);
const back = await fsb.get('data/ab/pack');
console.log(JSON.stringify({ same: back.equals(body), size: back.length }));
`;

// A mount with files over the 1 MiB streaming threshold (one off the block size), backed up and
// restored into a new place; prints whether every file came back byte for byte.
const RESTORE_CHILD = `
import { initRepository } from ${JSON.stringify(join(ROOT, 'dist/repo/index.js'))};
import { FsBackend } from ${JSON.stringify(join(ROOT, 'dist/storage/index.js'))};
import { filesEngine } from ${JSON.stringify(join(ROOT, 'dist/engines/files/index.js'))};
import { runBackup, runRestore } from ${JSON.stringify(join(ROOT, 'dist/engines/engine.js'))};
import { silentLogger } from ${JSON.stringify(join(ROOT, 'dist/core/log.js'))};
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
const [base] = process.argv.slice(2);
const files = { big: randomBytes((3 << 20) + 4097), block: randomBytes(2 << 20), small: randomBytes(100) };
mkdirSync(base + '/from/mount', { recursive: true });
mkdirSync(base + '/to');
for (const [name, body] of Object.entries(files)) writeFileSync(base + '/from/mount/' + name, body);
const repo = await initRepository({ storage: new FsBackend(base + '/repo'), password: 'p', kdf: 'fast' });
const ctx = { log: silentLogger, progress() {}, signal: new AbortController().signal };
const engine = (dir) => filesEngine.create('m', { path: 'mount' }, { configDir: dir, stateDir: base, log: silentLogger });
const artifact = await runBackup(await engine(base + '/from').openBackup({ ...ctx, repo, mode: 'live' }));
await runRestore(await engine(base + '/to').openRestore({ ...ctx, repo, options: {} }, artifact));
const same = Object.entries(files).every(([name, body]) => readFileSync(base + '/to/mount/' + name).equals(body));
console.log(JSON.stringify({ same }));
`;

let dir: string;
beforeAll(() => {
  ensureBuilt();
  dir = mkdtempSync(join(tmpdir(), 'bunker-direct-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('packs on a file system that refuses O_DIRECT', () => {
  beforeAll(() => {
    writeFileSync(join(dir, 'shim.c'), SHIM);
    const cc = spawnSync('cc', ['-shared', '-fPIC', '-O1', '-o', join(dir, 'shim.so'), join(dir, 'shim.c'), '-ldl'], { encoding: 'utf8' });
    expect(cc.status, cc.stderr).toBe(0);
    writeFileSync(join(dir, 'child.mjs'), CHILD);
  });

  const putThroughShim = (mode: 'open' | 'write') => {
    const repo = join(dir, `repo-${mode}`);
    const log = join(dir, `refused-${mode}.log`);
    const run = spawnSync(process.execPath, [join(dir, 'child.mjs'), repo], {
      encoding: 'utf8',
      env: { ...process.env, LD_PRELOAD: join(dir, 'shim.so'), SHIM_MODE: mode, SHIM_LOG: log },
    });
    expect(run.status, run.stderr).toBe(0);
    expect(JSON.parse(run.stdout.trim().split('\n').pop()!)).toEqual({ same: true, size: 3 * (1 << 20) + 17 });
    // Only the pack is there: no temp file from the refused attempt.
    expect(readdirSync(join(repo, 'data', 'ab'))).toEqual(['pack']);
    return readFileSync(log, 'utf8');
  };

  it('that refuses the flag at open (after creating the file) are written through the page cache', () => {
    // The shim did refuse a direct open of the pack's temp file, so the fallback is what ran.
    expect(putThroughShim('open')).toMatch(/^open .*data\/ab\/\.tmp-[0-9a-f]+$/m);
  });

  it('that refuses the direct writes are started over through the page cache', () => {
    expect(putThroughShim('write')).toMatch(/^write .*data\/ab\/\.tmp-[0-9a-f]+$/m);
  });

  const restoreThroughShim = (mode: 'open' | 'write') => {
    const base = join(dir, `restore-${mode}`);
    const log = join(dir, `restore-refused-${mode}.log`);
    writeFileSync(join(dir, 'restore-child.mjs'), RESTORE_CHILD);
    const run = spawnSync(process.execPath, [join(dir, 'restore-child.mjs'), base], {
      encoding: 'utf8',
      env: { ...process.env, LD_PRELOAD: join(dir, 'shim.so'), SHIM_MODE: mode, SHIM_LOG: log },
    });
    expect(run.status, run.stderr).toBe(0);
    expect(JSON.parse(run.stdout.trim().split('\n').pop()!)).toEqual({ same: true });
    return readFileSync(log, 'utf8');
  };

  it('restores large files through the page cache where the flag is refused at open', () => {
    // The restore's own direct open of the large files was refused (not only the packs').
    expect(restoreThroughShim('open')).toMatch(/^open .*\.bunker-stage-[^/]+\/big$/m);
  });

  it('restores large files through the page cache where the direct writes are refused', () => {
    expect(restoreThroughShim('write')).toMatch(/^write .*\.bunker-stage-[^/]+\/big$/m);
  });
});
