// Packs are written with O_DIRECT (FsBackend → writeObject in native/bunker-fs.c). A file system that
// refuses the flag must still get its packs, through the page cache. No file system here refuses it,
// so a child process runs with an LD_PRELOAD shim whose open() creates the file and then fails with
// EINVAL whenever O_DIRECT is asked for (as some file systems do): the put must unlink that file, write
// the pack buffered and leave no temp file behind.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
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
#include <unistd.h>
static int refuse(const char *path, int flags, mode_t mode, int (*real)(const char *, int, ...)) {
  int fd = real(path, flags & ~O_DIRECT, mode);
  if (fd >= 0) close(fd);
  if (getenv("SHIM_LOG")) { FILE *f = fopen(getenv("SHIM_LOG"), "a"); if (f) { fprintf(f, "%s\\n", path); fclose(f); } }
  errno = EINVAL;
  return -1;
}
#define SHIM_OPEN(name)                                                      \\
  int name(const char *path, int flags, ...) {                              \\
    static int (*real)(const char *, int, ...);                             \\
    if (!real) real = (int (*)(const char *, int, ...))dlsym(RTLD_NEXT, #name); \\
    mode_t mode = 0;                                                        \\
    if (flags & O_CREAT) { va_list ap; va_start(ap, flags); mode = va_arg(ap, mode_t); va_end(ap); } \\
    if (flags & O_DIRECT) return refuse(path, flags, mode, real);           \\
    return real(path, flags, mode);                                         \\
  }
SHIM_OPEN(open)
SHIM_OPEN(open64)
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

let dir: string;
beforeAll(() => {
  ensureBuilt();
  dir = mkdtempSync(join(tmpdir(), 'bunker-direct-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('packs on a file system that refuses O_DIRECT', () => {
  it('are written through the page cache, whole, with no temp file left', () => {
    writeFileSync(join(dir, 'shim.c'), SHIM);
    const cc = spawnSync('cc', ['-shared', '-fPIC', '-O1', '-o', join(dir, 'shim.so'), join(dir, 'shim.c'), '-ldl'], { encoding: 'utf8' });
    expect(cc.status, cc.stderr).toBe(0);
    writeFileSync(join(dir, 'child.mjs'), CHILD);
    const repo = join(dir, 'repo');
    const log = join(dir, 'refused.log');
    const run = spawnSync(process.execPath, [join(dir, 'child.mjs'), repo], {
      encoding: 'utf8',
      env: { ...process.env, LD_PRELOAD: join(dir, 'shim.so'), SHIM_LOG: log },
    });
    expect(run.status, run.stderr).toBe(0);
    expect(JSON.parse(run.stdout.trim().split('\n').pop()!)).toEqual({ same: true, size: 3 * (1 << 20) + 17 });
    // The shim did refuse a direct open of the pack's temp file (so the fallback is what ran)...
    const refused = spawnSync('cat', [log], { encoding: 'utf8' }).stdout;
    expect(refused).toMatch(/data\/ab\/\.tmp-[0-9a-f]+\n/);
    // ...and the file it created on the way was removed: only the pack is there.
    expect(readdirSync(join(repo, 'data', 'ab'))).toEqual(['pack']);
  });
});
