// listDir(): a directory's names and their lstat from one native statDir() trip, checked field by
// field against Node's own lstat for every entry type, with raw-byte names; and the fallback to
// names only for a directory over the limit.
import { linkSync, lstatSync, mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listDir } from '../../src/engines/files/fsio.js';
import { nativeFs } from '../../src/engines/files/native.js';
import { tempDir } from './harness.js';

const FIELDS = ['mode', 'uid', 'gid', 'size', 'blocks', 'nlink', 'dev', 'ino', 'rdev', 'mtimeNs', 'ctimeNs'] as const;
const KINDS = ['isFile', 'isDirectory', 'isSymbolicLink', 'isFIFO', 'isSocket', 'isCharacterDevice', 'isBlockDevice'] as const;

describe('listDir', () => {
  let dir: string;
  beforeAll(() => {
    dir = tempDir('listdir');
    writeFileSync(join(dir, 'file'), 'x'.repeat(5000));
    linkSync(join(dir, 'file'), join(dir, 'hard-link'));
    mkdirSync(join(dir, 'sub'));
    symlinkSync('file', join(dir, 'link'));
    nativeFs().mknod(Buffer.from(join(dir, 'fifo')), 0o010600, 0n);
    writeFileSync(Buffer.concat([Buffer.from(dir + '/'), Buffer.from('bad-\xff-name', 'latin1')]), '');
    writeFileSync(join(dir, 'new\nline'), '');
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('gives every entry but . and .. with the lstat Node gives', async () => {
    const { names, stats } = await listDir(Buffer.from(dir));
    expect(names.map((n) => n.toString('latin1')).sort()).toEqual(['bad-\xff-name', 'fifo', 'file', 'hard-link', 'link', 'new\nline', 'sub']);
    expect(stats).toHaveLength(names.length);
    names.forEach((name, i) => {
      const want = lstatSync(Buffer.concat([Buffer.from(dir + '/'), name]), { bigint: true });
      const got = stats![i]!;
      for (const f of FIELDS) expect([name.toString('latin1'), f, got[f]]).toEqual([name.toString('latin1'), f, want[f]]);
      for (const k of KINDS) expect([name.toString('latin1'), k, got[k]()]).toEqual([name.toString('latin1'), k, want[k]()]);
    });
  });

  it('grows its buffers for a directory of many long names (past 256 entries and 16 KiB of names)', async () => {
    const many = join(dir, 'sub');
    for (let i = 0; i < 1000; i++) writeFileSync(join(many, `${'long-name-'.repeat(10)}${i}`), 'y'.repeat(i));
    const { names, stats } = await listDir(Buffer.from(many));
    expect(names).toHaveLength(1000);
    const sizes = new Map(names.map((n, i) => [n.toString(), stats![i]!.size]));
    for (let i = 0; i < 1000; i++) expect(sizes.get(`${'long-name-'.repeat(10)}${i}`)).toBe(BigInt(i));
  });

  it('gives names only, to be stat\'ed one by one, for a directory over the limit', async () => {
    const { names, stats } = await listDir(Buffer.from(dir), 3);
    expect(names).toHaveLength(7);
    expect(stats).toBeUndefined();
  });

  it('rejects with ENOENT for a directory that is gone', async () => {
    await expect(listDir(Buffer.from(join(dir, 'missing')))).rejects.toMatchObject({ code: 'ENOENT' });
  });
});
