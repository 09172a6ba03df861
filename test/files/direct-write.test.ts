// Restored files over 1 MiB are written with O_DIRECT through writeAt() (native/bunker-fs.c): each
// call writes whole 4 KiB blocks and leaves the rest to be passed again with the next call; the final
// call pads the last block and cuts the file back to its length. Checked on ext4 (the temp dir) and
// tmpfs, in the uneven pieces a restore hands it.
import { randomBytes } from 'node:crypto';
import { closeSync, constants as FS, existsSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { nativeFs } from '../../src/engines/files/native.js';

const BLOCK = 4096;
const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

/** Opens a new file with O_DIRECT; undefined when this file system refuses the flag. */
function openDirect(path: string): number | undefined {
  try {
    return openSync(path, FS.O_WRONLY | FS.O_CREAT | FS.O_EXCL | FS.O_DIRECT, 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EINVAL') throw err;
    rmSync(path, { force: true });
    return undefined;
  }
}

const places = [{ label: 'ext4 (temp dir)', root: tmpdir() }, ...(existsSync('/dev/shm') ? [{ label: 'tmpfs', root: '/dev/shm' }] : [])];

describe.each(places)('writeAt on $label', ({ root }) => {
  const dir = mkdtempSync(join(root, 'bunker-direct-write-'));
  dirs.push(dir);

  it.each([
    { name: 'one block', pieces: [BLOCK] },
    { name: 'under a block', pieces: [1] },
    { name: 'a block and one byte', pieces: [BLOCK + 1] },
    { name: 'uneven pieces around blocks and the 1 MiB buffer', pieces: [1000, 5000, (1 << 20) + 3, 2 << 20, 17, BLOCK - 1] },
    { name: 'pieces smaller than a block', pieces: [10, 20, 30, BLOCK - 60, 1] },
  ])('$name: the file holds exactly the bytes', async ({ pieces }) => {
    const path = join(dir, `f-${pieces.join('-')}`);
    const data = randomBytes(pieces.reduce((a, b) => a + b, 0));
    const directFd = openDirect(path);
    const direct = directFd !== undefined;
    if (root === tmpdir()) expect(direct).toBe(true); // the path under test; tmpfs may refuse the flag
    const fd = directFd ?? openSync(path, FS.O_WRONLY | FS.O_CREAT | FS.O_EXCL, 0o600);
    try {
      let at = 0; // bytes of `data` handed over so far
      let written = 0; // bytes writeAt reported written
      for (const size of pieces) {
        const parts = [data.subarray(written, at), data.subarray(at, at + size)].filter((p) => p.length > 0);
        at += size;
        const n = await nativeFs().writeAt(fd, parts, written, false);
        if (direct) {
          // Only whole blocks, and all of them.
          expect(n % BLOCK).toBe(0);
          expect(at - written - n).toBeLessThan(BLOCK);
        } else expect(n).toBe(at - written);
        written += n;
      }
      if (written < at) expect(await nativeFs().writeAt(fd, [data.subarray(written)], written, true)).toBe(at - written);
    } finally {
      closeSync(fd);
    }
    const back = readFileSync(path);
    expect(back.length).toBe(data.length);
    expect(back.equals(data)).toBe(true);
  });
});

describe('writes that wait for the device run on threads of their own', () => {
  it('writeAt, writeObject and readAt finish while every thread of libuv\'s pool is blocked', async () => {
    const { execFileSync } = await import('node:child_process');
    const { open: openAsync } = await import('node:fs/promises');
    const { nativeStorageFs } = await import('../../src/storage/native.js');
    const dir = mkdtempSync(join(tmpdir(), 'bunker-device-threads-'));
    dirs.push(dir);
    // Opening a FIFO for reading blocks its thread until a writer comes: more of them than the pool has threads.
    const fifos = Array.from({ length: 16 }, (_, i) => join(dir, `fifo-${i}`));
    for (const f of fifos) execFileSync('mkfifo', [f]);
    const blocked = fifos.map((f) => openAsync(f, 'r'));
    try {
      const data = randomBytes(3 * BLOCK + 5);
      const path = join(dir, 'file');
      const fd = openSync(path, FS.O_WRONLY | FS.O_CREAT | FS.O_EXCL, 0o600);
      const deadline = (what: string) => new Promise((_, reject) => setTimeout(() => reject(new Error(`${what} waited for the blocked pool`)), 5000).unref());
      await Promise.race([nativeFs().writeAt(fd, [data], 0, true), deadline('writeAt')]);
      closeSync(fd);
      expect(readFileSync(path).equals(data)).toBe(true);
      const object = join(dir, 'object');
      await Promise.race([nativeStorageFs().writeObject(Buffer.from(join(dir, 'object.tmp')), Buffer.from(object), Buffer.from(dir), [data], false), deadline('writeObject')]);
      expect(readFileSync(object).equals(data)).toBe(true);
      // And a ranged read of it, as a restore reads a pack; past the end it returns what there is.
      const readFd = openSync(object, 'r');
      try {
        const got = Buffer.alloc(data.length);
        expect(await Promise.race([nativeStorageFs().readAt(readFd, got, 10, 100, 7), deadline('readAt')])).toBe(100);
        expect(got.subarray(10, 110).equals(data.subarray(7, 107))).toBe(true);
        expect(await nativeStorageFs().readAt(readFd, got, 0, 50, data.length - 20)).toBe(20);
      } finally {
        closeSync(readFd);
      }
    } finally {
      // A writer for each FIFO releases the pool; a FIFO whose open has not started yet has no reader
      // (ENXIO) until a thread frees up.
      const waiting = new Set(fifos);
      const writers: number[] = [];
      while (waiting.size > 0) {
        for (const f of [...waiting]) {
          try {
            writers.push(openSync(f, FS.O_WRONLY | FS.O_NONBLOCK));
            waiting.delete(f);
          } catch (err) {
            if ((err as NodeJS.ErrnoException).code !== 'ENXIO') throw err;
          }
        }
        await new Promise((r) => setTimeout(r, 5));
      }
      for (const handle of await Promise.all(blocked)) await handle.close();
      writers.forEach((w) => closeSync(w));
    }
  });
});
