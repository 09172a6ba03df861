import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isNotFound } from './backend.js';
import { FsBackend } from './fs-backend.js';
import { openStorage } from './open-storage.js';

let dir: string;
let fsb: FsBackend;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'bunker-fs-'));
  fsb = new FsBackend(dir);
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('FsBackend pack reads through kept-open descriptors', () => {
  const packName = (i: number) => `data/${String(i % 100).padStart(2, '0')}/pack-${i}`;
  const body = (i: number) => Buffer.from(Array.from({ length: 4096 }, (_, k) => (i * 31 + k) & 0xff));

  it('returns the right bytes for interleaved ranges of more packs than it keeps open, concurrently', async () => {
    const n = 80; // over the 32 descriptors kept: evictions happen while reads are in flight
    for (let i = 0; i < n; i++) await fsb.put(packName(i), body(i));
    const reads: Promise<void>[] = [];
    for (let round = 0; round < 5; round++) {
      for (let i = 0; i < n; i++) {
        const offset = (i * 97 + round * 401) % 4000;
        reads.push(fsb.get(packName(i), { offset, length: 96 }).then((got) => expect(got.equals(body(i).subarray(offset, offset + 96))).toBe(true)));
      }
    }
    await Promise.all(reads);
  });

  it('reports a deleted pack as missing and a range past its end as corrupt', async () => {
    await fsb.put('data/aa/p1', body(1));
    expect((await fsb.get('data/aa/p1', { offset: 0, length: 10 })).equals(body(1).subarray(0, 10))).toBe(true);
    await fsb.delete('data/aa/p1');
    await expect(fsb.get('data/aa/p1', { offset: 0, length: 10 })).rejects.toSatisfy(isNotFound);
    await fsb.put('data/aa/p2', body(2));
    await expect(fsb.get('data/aa/p2', { offset: 4000, length: 200 })).rejects.toThrow(/shorter than the 4200 bytes expected/);
  });
});

describe('FsBackend contract', () => {
  it('put then get, ranges, stat and list', async () => {
    await fsb.put('data/ab/abc', Buffer.from('hello world'));
    await fsb.put('index/one', Buffer.from('x'));
    expect((await fsb.get('data/ab/abc')).toString()).toBe('hello world');
    expect((await fsb.get('data/ab/abc', { offset: 6, length: 5 })).toString()).toBe('world');
    expect(await fsb.stat('data/ab/abc')).toEqual({ name: 'data/ab/abc', size: 11 });
    expect(await fsb.stat('data/ab/none')).toBeNull();
    expect((await fsb.list('data/')).map((o) => o.name)).toEqual(['data/ab/abc']);
    expect((await fsb.list('')).map((o) => o.name).sort()).toEqual(['data/ab/abc', 'index/one']);
    expect(await fsb.list('nothing/')).toEqual([]);
  });

  it('stores a body given in parts as their concatenation', async () => {
    await fsb.put('data/pack', [Buffer.from('ab'), new Uint8Array([99]), Buffer.alloc(0), Buffer.from('d')]);
    expect((await fsb.get('data/pack')).toString()).toBe('abcd');
  });

  it('writes packs byte-exact at sizes around the direct-write block and buffer sizes, wherever the repository lives', async () => {
    // Packs go through a 1 MiB aligned buffer with O_DIRECT, the last block padded and cut back;
    // tmpfs (/dev/shm) may refuse O_DIRECT, and then the same call writes through the page cache.
    const roots = [dir];
    if (existsSync('/dev/shm')) roots.push(await mkdtemp('/dev/shm/bunker-fs-'));
    try {
      for (const root of roots) {
        const backend = new FsBackend(root);
        for (const size of [0, 1, 4095, 4096, 4097, (1 << 20) - 1, 1 << 20, (1 << 20) + 1, 3 * (1 << 20) + 17]) {
          const body = randomBytes(size);
          // Parts of uneven sizes, so buffer fills straddle part boundaries.
          const parts = [body.subarray(0, Math.floor(size / 3)), body.subarray(Math.floor(size / 3), size - 5), body.subarray(Math.max(0, size - 5))];
          await backend.put(`data/ab/p${size}`, parts);
          expect(await backend.stat(`data/ab/p${size}`)).toEqual({ name: `data/ab/p${size}`, size });
          expect((await backend.get(`data/ab/p${size}`)).equals(body), `${root}: ${size} bytes`).toBe(true);
        }
        expect((await readdir(join(root, 'data', 'ab'))).filter((n) => n.startsWith('.tmp-'))).toEqual([]);
      }
    } finally {
      for (const root of roots.slice(1)) await rm(root, { recursive: true, force: true });
    }
  });

  it('reports a failed write with the object name and leaves no temp file', async () => {
    // A directory where the object should go: the write and fsync succeed, the rename fails.
    await mkdir(join(dir, 'data', 'ab', 'second'), { recursive: true });
    await expect(fsb.put('data/ab/second', Buffer.alloc(5000))).rejects.toMatchObject({ code: 'storage', message: expect.stringContaining('data/ab/second') });
    expect(await readdir(join(dir, 'data', 'ab'))).toEqual(['second']);
  });

  it('overwrites atomically and leaves no temp file', async () => {
    await fsb.put('config', Buffer.from('one'));
    await fsb.put('config', Buffer.from('two'));
    expect((await fsb.get('config')).toString()).toBe('two');
    expect(await readdir(dir)).toEqual(['config']);
  });

  it('ignores temp files a crash left behind', async () => {
    await fsb.put('index/a', Buffer.from('a'));
    await writeFile(join(dir, 'index', '.tmp-deadbeef'), 'partial');
    expect((await fsb.list('index/')).map((o) => o.name)).toEqual(['index/a']);
  });

  it('reports not found, short ranges and bad names clearly', async () => {
    const err = await fsb.get('snapshots/missing').catch((e: unknown) => e);
    expect(isNotFound(err)).toBe(true);
    await fsb.put('x', Buffer.from('abc'));
    await expect(fsb.get('x', { offset: 2, length: 5 })).rejects.toMatchObject({ code: 'corrupt' });
    await expect(fsb.put('../escape', Buffer.from(''))).rejects.toThrow(/invalid storage object name/);
  });

  it('deletes idempotently', async () => {
    await fsb.put('locks/l', Buffer.from('1'));
    await fsb.delete('locks/l');
    await fsb.delete('locks/l');
    expect(await fsb.stat('locks/l')).toBeNull();
  });
});

describe('openStorage', () => {
  it('resolves file: URLs relative to the base dir, and rejects unknown schemes without leaking secrets', async () => {
    const s = openStorage([{ name: 'local', url: 'file:backups' }], dir);
    expect(s.location).toBe(join(dir, 'backups'));
    expect(openStorage([{ name: 'abs', url: `file://${dir}` }], '/').location).toBe(dir);
    let message = '';
    try {
      openStorage([{ name: 'cloud', url: 's3://key:supersecret@host/bucket' }], dir);
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message).toMatch(/not supported/);
    expect(message).not.toContain('supersecret');
    expect(() => openStorage([], dir)).toThrow(/no storage location/);
  });
});
