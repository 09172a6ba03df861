// Small files are restored in batches by one native call each (writeFiles in native/bunker-fs.c):
// the call itself (contents, modes, owners, nanosecond times, refusals that never follow a link) and a
// restore of directories holding several batches.
import { existsSync, lstatSync, mkdirSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runBackup, runRestore } from '../../src/engines/engine.js';
import { nativeFs } from '../../src/engines/files/native.js';
import { createTestRepo, type TestRepo } from '../helpers/repo.js';
import { backupCtx, mountEngine, restoreCtx, tempDir } from './harness.js';
import { describeTree, diffTrees } from './tree-compare.js';

const native = nativeFs();
const asRoot = process.getuid?.() === 0;

function batch(files: Array<{ name: string; data: string; mode: number; flags?: number; uid?: number; gid?: number; mtimeNs: bigint }>) {
  const meta = new Uint32Array(files.length * 5);
  files.forEach((f, i) => meta.set([Buffer.byteLength(f.data), f.mode, f.flags ?? 0, f.uid ?? 0, f.gid ?? 0], i * 5));
  return [
    Buffer.concat(files.map((f) => Buffer.from(`${f.name}\0`))),
    // The contents in pieces that do not line up with the files (as the repository's blobs may not).
    [Buffer.from(files.map((f) => f.data).join('')).subarray(0, 3), Buffer.from(files.map((f) => f.data).join('')).subarray(3), Buffer.alloc(0)],
    meta,
    BigInt64Array.from(files.map((f) => f.mtimeNs)),
  ] as const;
}

describe('native writeFiles', () => {
  let dir: string;
  beforeAll(() => {
    dir = tempDir('batch');
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('creates each file with its contents, mode, owner and nanosecond times', async () => {
    const d = join(dir, 'ok');
    mkdirSync(d);
    await native.writeFiles(
      Buffer.from(d),
      ...batch([
        { name: 'a', data: 'first', mode: 0o640, flags: 1, mtimeNs: 1_700_000_000_123_456_789n },
        { name: 'empty', data: '', mode: 0o600, mtimeNs: -1_500_000_001n },
        { name: 'setuid', data: 'third', mode: 0o4755, flags: 1 | (asRoot ? 2 : 0), uid: 1234, gid: 5678, mtimeNs: 5n },
      ]),
    );
    const a = statSync(join(d, 'a'), { bigint: true }); // before reading it (relatime would move atime)
    expect(readFileSync(join(d, 'a'), 'utf8')).toBe('first');
    expect(readFileSync(join(d, 'empty'), 'utf8')).toBe('');
    expect(readFileSync(join(d, 'setuid'), 'utf8')).toBe('third');
    expect(Number(a.mode & 0o7777n)).toBe(0o640);
    expect(a.mtimeNs).toBe(1_700_000_000_123_456_789n);
    expect(a.atimeNs).toBe(1_700_000_000_123_456_789n);
    expect(statSync(join(d, 'empty'), { bigint: true }).mtimeNs).toBe(-1_500_000_001n);
    const s = statSync(join(d, 'setuid'), { bigint: true });
    expect(Number(s.mode & 0o7777n)).toBe(0o4755); // fchmod after fchown, which clears setuid
    if (asRoot) expect([s.uid, s.gid]).toEqual([1234n, 5678n]);
  });

  it('refuses a name that exists, without writing through a symlink, and says which file', async () => {
    const d = join(dir, 'link');
    mkdirSync(d);
    writeFileSync(join(dir, 'victim'), 'untouched');
    symlinkSync(join(dir, 'victim'), join(d, 'b'));
    const err = await native
      .writeFiles(Buffer.from(d), ...batch([
        { name: 'a', data: 'x', mode: 0o644, mtimeNs: 0n },
        { name: 'b', data: 'overwritten', mode: 0o644, mtimeNs: 0n },
      ]))
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'EEXIST', index: 1, syscall: 'open' });
    expect(readFileSync(join(dir, 'victim'), 'utf8')).toBe('untouched');
    expect(readlinkSync(join(d, 'b'))).toBe(join(dir, 'victim'));
  });

  it('refuses a directory that is a symlink', async () => {
    const real = join(dir, 'real');
    mkdirSync(real);
    symlinkSync(real, join(dir, 'to-real'));
    const err = await native.writeFiles(Buffer.from(join(dir, 'to-real')), ...batch([{ name: 'a', data: 'x', mode: 0o644, mtimeNs: 0n }])).catch((e: unknown) => e);
    expect(err).toMatchObject({ index: -1, syscall: 'open' });
    expect(existsSync(join(real, 'a'))).toBe(false);
  });

  it('rejects malformed batches before touching the disk', () => {
    const d = Buffer.from(dir);
    const one = (names: Buffer, data: Buffer, length: number) => () =>
      native.writeFiles(d, names, [data], new Uint32Array([length, 0o644, 0, 0, 0]), new BigInt64Array(1));
    expect(one(Buffer.from('x/y\0'), Buffer.alloc(0), 0)).toThrow(/bad arguments/); // a name with "/"
    expect(one(Buffer.from('\0'), Buffer.alloc(0), 0)).toThrow(/bad arguments/); // an empty name
    expect(one(Buffer.from('a\0b\0'), Buffer.alloc(0), 0)).toThrow(/bad arguments/); // more names than files
    expect(one(Buffer.from('a\0'), Buffer.alloc(3), 2)).toThrow(/bad arguments/); // lengths do not add up
    expect(() => native.writeFiles(d, Buffer.from('a\0'), [Buffer.alloc(1), 'x' as unknown as Buffer], new Uint32Array([1, 0o644, 0, 0, 0]), new BigInt64Array(1))).toThrow(/bad arguments/);
    expect(existsSync(join(dir, 'x'))).toBe(false);
    expect(existsSync(join(dir, 'a'))).toBe(false);
  });
});

describe('files restore of directories holding several batches', () => {
  let t: TestRepo;
  let base: string;
  beforeAll(async () => {
    t = await createTestRepo();
    base = tempDir('batches');
  });
  afterAll(async () => {
    await t?.cleanup();
    if (base) rmSync(base, { recursive: true, force: true });
  });

  it('restores 700 small files (cut by count and by bytes), equal by contents and metadata', async () => {
    const src = join(base, 'src');
    mkdirSync(join(src, 'many'), { recursive: true });
    for (let i = 0; i < 600; i++) writeFileSync(join(src, 'many', `f${String(i).padStart(4, '0')}`), i % 7 === 0 ? '' : `file ${i} `.repeat(1 + (i % 50)));
    mkdirSync(join(src, 'big'));
    for (let i = 0; i < 100; i++) writeFileSync(join(src, 'big', `b${i}`), Buffer.alloc(100_000 + i, i)); // ~10 batches by bytes
    const artifact = await runBackup(await mountEngine(base, 'src').openBackup(backupCtx(t.repo)));
    await t.repo.flush();
    const out = join(base, 'out');
    mkdirSync(out);
    await runRestore(await mountEngine(out, 'mount').openRestore(restoreCtx(t.repo), artifact));
    expect(diffTrees(describeTree(src), describeTree(join(out, 'mount')))).toEqual([]);
    expect(lstatSync(join(out, 'mount', 'many', 'f0599')).size).toBeGreaterThan(0);
  });
});
