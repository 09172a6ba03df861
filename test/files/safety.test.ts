// Crafted snapshots must not make a restore write outside its mount: "../" and absolute names, "..",
// a symlink and a directory of the same name, subset paths through symlinks. Each is refused with
// unsafe_path, the mount keeps its old contents and nothing appears outside it.
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isBunkerError } from '../../src/core/errors.js';
import { runRestore, type RestoreOptions } from '../../src/engines/engine.js';
import { encodeTree, type TreeEntry } from '../../src/repo/tree.js';
import type { ServiceArtifact } from '../../src/repo/types.js';
import { createTestRepo, type TestRepo } from '../helpers/repo.js';
import { mountEngine, restoreCtx, tempDir } from './harness.js';

function entry(name: string | Buffer, over: Partial<TreeEntry>): TreeEntry {
  return { name: Buffer.isBuffer(name) ? name : Buffer.from(name), type: 'file', mode: 0o644, uid: 0, gid: 0, mtimeNs: 0n, ctimeNs: 0n, ino: 0n, flags: 0, ...over };
}

describe('files engine restore safety', () => {
  let t: TestRepo;
  let base: string;
  let outside: string;

  beforeAll(async () => {
    t = await createTestRepo();
    base = tempDir('safety');
    outside = join(base, 'outside');
    mkdirSync(outside);
  });
  afterAll(async () => {
    await t?.cleanup();
    if (base) rmSync(base, { recursive: true, force: true });
  });

  /** Stores a crafted root tree whose entries encodeTree would never produce from a real directory. */
  async function craft(root: Buffer): Promise<ServiceArtifact> {
    const id = await t.repo.putTree(root);
    await t.repo.flush();
    return { engine: 'files', format: 1, streams: {}, trees: { root: id }, meta: {}, size: 0, warnings: [] };
  }

  async function fileEntry(name: string | Buffer, text: string): Promise<TreeEntry> {
    return entry(name, { content: await t.repo.storeBuffer(Buffer.from(text)) });
  }

  /** Restores into a fresh mount holding one file; expects unsafe_path and an untouched mount. */
  async function expectRefused(artifact: ServiceArtifact, options: RestoreOptions = {}, prepare?: (mount: string) => void, why = /refusing/): Promise<void> {
    const dir = join(base, `case-${Math.random().toString(36).slice(2)}`);
    const mount = join(dir, 'mount');
    mkdirSync(mount, { recursive: true });
    writeFileSync(join(mount, 'original'), 'old contents');
    prepare?.(mount);
    let err: unknown;
    try {
      await runRestore(await mountEngine(dir).openRestore(restoreCtx(t.repo, options), artifact));
    } catch (e) {
      err = e;
    }
    expect(isBunkerError(err, 'unsafe_path'), String(err)).toBe(true);
    expect((err as Error).message).toMatch(why);
    expect(readFileSync(join(mount, 'original'), 'utf8')).toBe('old contents');
    expect(readdirSync(dir)).toEqual(['mount']); // no staging directory left, nothing written beside
    expect(readdirSync(outside)).toEqual([]);
    expect(existsSync(join(base, 'escape'))).toBe(false);
    expect(existsSync(join(dir, 'escape'))).toBe(false);
  }

  const modes: Array<[string, RestoreOptions]> = [
    ['staged', {}],
    ['in place', { inPlace: true }],
  ];

  for (const [label, options] of modes) {
    it(`refuses a "../escape" entry (${label})`, async () => {
      await expectRefused(await craft(encodeTree([await fileEntry('../escape', 'x')])), options);
    });

    it(`refuses an absolute-path entry (${label})`, async () => {
      await expectRefused(await craft(encodeTree([await fileEntry(join(outside, 'abs'), 'x')])), options);
    });

    it(`refuses a ".." directory entry (${label})`, async () => {
      const inner = await t.repo.putTree(encodeTree([await fileEntry('escape', 'x')]));
      await expectRefused(await craft(encodeTree([entry('..', { type: 'dir', mode: 0o755, subtree: inner })])), options);
    });

    it(`refuses a symlink followed by a directory of the same name (${label})`, async () => {
      const inner = await t.repo.putTree(encodeTree([await fileEntry('pwned', 'x')]));
      // encodeTree refuses duplicates, so splice two single-entry trees by hand: count 2, then both entries.
      const link = encodeTree([entry('a', { type: 'symlink', target: Buffer.from(outside) })]);
      const dir = encodeTree([entry('a', { type: 'dir', mode: 0o755, subtree: inner })]);
      const blob = Buffer.concat([link.subarray(0, 4), Buffer.from([2]), link.subarray(5), dir.subarray(5)]);
      await expectRefused(await craft(blob), options, undefined, /"a" appears twice/);
    });
  }

  it('refuses subset paths that are absolute, climb with "..", or pass through a symlink in the backup', async () => {
    const artifact = await craft(encodeTree([entry('a', { type: 'symlink', target: Buffer.from(outside) }), await fileEntry('f', 'x')]));
    for (const paths of [['a/pwned'], ['../escape'], [join(outside, 'x')], ['f/../../escape']]) {
      await expectRefused(artifact, { paths });
      await expectRefused(artifact, { paths, inPlace: true });
    }
  });

  it('refuses a subset restore below a directory that is a symlink in the mount', async () => {
    const inner = await t.repo.putTree(encodeTree([await fileEntry('pwned', 'x')]));
    const artifact = await craft(encodeTree([entry('sub', { type: 'dir', mode: 0o755, subtree: inner })]));
    const linkSub = (mount: string) => symlinkSync(outside, join(mount, 'sub'));
    await expectRefused(artifact, { paths: ['sub/pwned'] }, linkSub, /"sub": in the mount it is a symlink/);
    await expectRefused(artifact, { paths: ['sub/pwned'], inPlace: true }, linkSub, /"sub": in the mount it is a symlink/);
  });

  it('restores symlinks as links and never follows them', async () => {
    const artifact = await craft(encodeTree([entry('to-outside', { type: 'symlink', target: Buffer.from(outside) }), await fileEntry('f', 'inside')]));
    const dir = join(base, 'links-ok');
    mkdirSync(dir);
    await runRestore(await mountEngine(dir).openRestore(restoreCtx(t.repo), artifact));
    expect(readFileSync(join(dir, 'mount/f'), 'utf8')).toBe('inside');
    expect(readdirSync(outside)).toEqual([]);
  });
});
