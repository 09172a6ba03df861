// Round trips of the files engine through a real repository: every metadata case of issue 3,
// restore over an existing tree, incremental backups, in-place and subset restores, the
// prepare/pin/stream phases and files that change while read.
import { appendFileSync, chmodSync, cpSync, existsSync, linkSync, lstatSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runBackup, runRestore } from '../../src/engines/engine.js';
import { decodeTree } from '../../src/repo/tree.js';
import type { Repository, ServiceArtifact } from '../../src/repo/types.js';
import { createTestRepo, type TestRepo } from '../helpers/repo.js';
import { FilesBackupSession } from '../../src/engines/files/backup.js';
import { FilesRestoreSession } from '../../src/engines/files/restore.js';
import { buildEdgeTree } from './fixture.js';
import { backupCtx, mountEngine, restoreCtx, tempDir } from './harness.js';
import { describeTree, diffTrees } from './tree-compare.js';

describe('files engine round trip', () => {
  let t: TestRepo;
  let repo: Repository;
  let base: string;
  let source: string;
  let first: ServiceArtifact;
  let devices = false;

  beforeAll(async () => {
    t = await createTestRepo();
    base = tempDir('rt');
    source = join(base, 'mount');
    mkdirSync(source);
    devices = buildEdgeTree(source).devices;
    first = await runBackup(await mountEngine(base).openBackup(backupCtx(t.repo)));
    await t.repo.flush();
    repo = await t.reopen(); // restores read through a second handle, as another process would
  });

  afterAll(async () => {
    await t?.cleanup();
    if (base) rmSync(base, { recursive: true, force: true });
  });

  it('restores every case into a new location, equal by metadata', async () => {
    expect(first.trees.root).toMatch(/^[0-9a-f]{64}$/);
    expect(first.warnings).toEqual([]);
    const other = tempDir('rt-new');
    try {
      await runRestore(await mountEngine(other).openRestore(restoreCtx(repo), first));
      const want = describeTree(source, { withRoot: true });
      const got = describeTree(join(other, 'mount'), { withRoot: true });
      expect(diffTrees(want, got)).toEqual([]);
      // The comparison saw the cases it is meant to check.
      expect(got.get('/data/sparse')).toMatchObject({ sparse: true, size: 64 << 20 });
      expect(got.get('/special/fifo')?.type).toBe('fifo');
      if (devices) expect(got.get('/special/null-dev')?.type).toBe('chardev');
      expect(got.get('/links/other/hard-c')?.linkedTo).toBe('/links/hard-a');
      expect(got.get('/times/2100')?.mtimeNs).toBe('4102444800999999999');
      expect(got.get('/modes/owned')?.owner).toBe('1234:5678');
      expect(got.get('/data/xattr-file')?.xattrs).toContain('user.binary=000102ff');
      expect(got.get('/names/bad-%ff%fe-utf8')).toBeDefined();
      expect(lstatSync(join(other, 'mount/data/sparse')).blocks * 512).toBeLessThan(1 << 20);
      // The artifact's totals: every file name (hard links each count), every directory with the
      // root, and the files' bytes, summed over leaf and inner directories alike.
      const files = [...want.values()].filter((f) => f.type === 'file');
      expect(first.meta).toMatchObject({ files: files.length, dirs: [...want.values()].filter((f) => f.type === 'dir').length });
      expect(first.size).toBe(files.reduce((n, f) => n + Number(f.size), 0));
    } finally {
      rmSync(other, { recursive: true, force: true });
    }
  });

  it('backs up and restores every case through the thread pool too (as once a slow disk was seen)', async () => {
    FilesBackupSession.callsOnThread = false;
    FilesRestoreSession.callsOnThread = false;
    const other = tempDir('rt-pool');
    try {
      const artifact = await runBackup(await mountEngine(base).openBackup(backupCtx(t.repo)));
      await t.repo.flush();
      await runRestore(await mountEngine(other).openRestore(restoreCtx(await t.reopen()), artifact));
      expect(diffTrees(describeTree(source, { withRoot: true }), describeTree(join(other, 'mount'), { withRoot: true }))).toEqual([]);
    } finally {
      FilesBackupSession.callsOnThread = true;
      FilesRestoreSession.callsOnThread = true;
      rmSync(other, { recursive: true, force: true });
    }
  });

  it('swaps a restore over an existing, different tree and leaves nothing beside it', async () => {
    const other = tempDir('rt-over');
    try {
      const mount = join(other, 'mount');
      mkdirSync(join(mount, 'data'), { recursive: true });
      writeFileSync(join(mount, 'data/text'), 'stale');
      writeFileSync(join(mount, 'extra'), 'not in the backup');
      await runRestore(await mountEngine(other).openRestore(restoreCtx(repo), first));
      expect(diffTrees(describeTree(source, { withRoot: true }), describeTree(mount, { withRoot: true }))).toEqual([]);
      expect(readdirSync(other)).toEqual(['mount']);
    } finally {
      rmSync(other, { recursive: true, force: true });
    }
  });

  it('restores in place, rewriting only what differs', async () => {
    const other = tempDir('rt-inplace');
    try {
      const mount = join(other, 'mount');
      await runRestore(await mountEngine(other).openRestore(restoreCtx(repo), first));
      writeFileSync(join(mount, 'data/text'), 'changed');
      rmSync(join(mount, 'names'), { recursive: true });
      writeFileSync(join(mount, 'stray'), 'remove me');
      chmodSync(join(mount, 'modes/m600'), 0o644);
      const untouchedIno = statSync(join(mount, 'data/random-3m')).ino;
      await runRestore(await mountEngine(other).openRestore(restoreCtx(repo, { inPlace: true }), first));
      expect(diffTrees(describeTree(source, { withRoot: true }), describeTree(mount, { withRoot: true }))).toEqual([]);
      expect(statSync(join(mount, 'data/random-3m')).ino).toBe(untouchedIno);
    } finally {
      rmSync(other, { recursive: true, force: true });
    }
  });

  it('restores a subset, leaving the rest of the mount alone', async () => {
    const other = tempDir('rt-subset');
    try {
      const mount = join(other, 'mount');
      mkdirSync(join(mount, 'data'), { recursive: true });
      writeFileSync(join(mount, 'data/text'), 'stale');
      writeFileSync(join(mount, 'keep'), 'mine');
      await runRestore(await mountEngine(other).openRestore(restoreCtx(repo, { paths: ['data/text', 'links/other'] }), first));
      expect(readFileSync(join(mount, 'data/text'))).toEqual(readFileSync(join(source, 'data/text')));
      expect(readFileSync(join(mount, 'links/other/hard-c'), 'utf8')).toBe('one inode, three names');
      expect(readFileSync(join(mount, 'keep'), 'utf8')).toBe('mine');
      expect(existsSync(join(mount, 'data/random-3m'))).toBe(false);
      expect(readdirSync(other)).toEqual(['mount']);
    } finally {
      rmSync(other, { recursive: true, force: true });
    }
  });

  it('restores a subset into a mount that does not exist yet', async () => {
    const other = tempDir('rt-subset-new');
    try {
      await runRestore(await mountEngine(other).openRestore(restoreCtx(repo, { paths: ['deep/d0/d1'] }), first));
      const want = describeTree(join(source, 'deep/d0/d1'));
      expect(diffTrees(want, describeTree(join(other, 'mount/deep/d0/d1')))).toEqual([]);
      expect(readdirSync(join(other, 'mount'))).toEqual(['deep']);
      expect(readdirSync(other)).toEqual(['mount']);
    } finally {
      rmSync(other, { recursive: true, force: true });
    }
  });

  it('backs up incrementally: unchanged files are not read again', async () => {
    writeFileSync(join(source, 'data/text'), 'edited after the first backup');
    const before = t.repo.stats().bytes;
    const second = await runBackup(await mountEngine(base).openBackup(backupCtx(t.repo, first)));
    const read = t.repo.stats().bytes - before;
    // Only the edited file and the tree objects were written: far less than the 67 MiB of files.
    expect(read).toBeGreaterThan(0);
    expect(read).toBeLessThan(256 * 1024);
    await t.repo.flush();
    const other = tempDir('rt-incr');
    try {
      await runRestore(await mountEngine(other).openRestore(restoreCtx(await t.reopen()), second));
      expect(diffTrees(describeTree(source, { withRoot: true }), describeTree(join(other, 'mount'), { withRoot: true }))).toEqual([]);
    } finally {
      rmSync(other, { recursive: true, force: true });
    }
  });

  it("reuses the parent backup's tree of every unchanged directory, and only those", async () => {
    const dir = tempDir('rt-reuse');
    const subtree = async (root: string, name: string) => decodeTree(await t.repo.getTree(root)).find((e) => e.name.toString() === name)!.subtree;
    try {
      const mount = join(dir, 'mount');
      mkdirSync(join(mount, 'same/deep'), { recursive: true });
      mkdirSync(join(mount, 'edited'));
      writeFileSync(join(mount, 'same/deep/file'), 'unchanged');
      symlinkSync('deep/file', join(mount, 'same/link'));
      writeFileSync(join(mount, 'edited/file'), 'before');
      const a = await runBackup(await mountEngine(dir).openBackup(backupCtx(t.repo)));
      let queued = t.repo.stats().chunks;
      const b = await runBackup(await mountEngine(dir).openBackup(backupCtx(t.repo, a)));
      expect(t.repo.stats().chunks - queued).toBe(0); // not a tree encoded and stored again
      expect(b.trees.root).toBe(a.trees.root);
      expect(b.meta).toEqual(a.meta);
      expect(b.size).toBe(a.size);

      // Same size, so only the file's times tell the change; hard links are never reused (their
      // group numbers are per backup), nor is anything above them.
      writeFileSync(join(mount, 'edited/file'), 'after!');
      mkdirSync(join(mount, 'linked'));
      writeFileSync(join(mount, 'linked/one'), 'two names');
      linkSync(join(mount, 'linked/one'), join(mount, 'linked/two'));
      const c = await runBackup(await mountEngine(dir).openBackup(backupCtx(t.repo, b)));
      queued = t.repo.stats().chunks;
      const d = await runBackup(await mountEngine(dir).openBackup(backupCtx(t.repo, c)));
      expect(t.repo.stats().chunks - queued).toBe(2); // "linked" and the root
      expect(c.trees.root).not.toBe(b.trees.root);
      expect(await subtree(c.trees.root!, 'same')).toBe(await subtree(b.trees.root!, 'same'));
      expect(await subtree(c.trees.root!, 'edited')).not.toBe(await subtree(b.trees.root!, 'edited'));
      expect(await subtree(d.trees.root!, 'same')).toBe(await subtree(b.trees.root!, 'same'));
      expect(d.meta).toEqual(c.meta);
      expect(d.meta.files).toBe(4);
      expect(d.size).toBe(c.size);

      await t.repo.flush();
      const other = tempDir('rt-reuse-out');
      try {
        await runRestore(await mountEngine(other).openRestore(restoreCtx(await t.reopen()), d));
        expect(diffTrees(describeTree(mount, { withRoot: true }), describeTree(join(other, 'mount'), { withRoot: true }))).toEqual([]);
        expect(statSync(join(other, 'mount/linked/two')).ino).toBe(statSync(join(other, 'mount/linked/one')).ino);
      } finally {
        rmSync(other, { recursive: true, force: true });
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('describes again a name that became another type or lost a chunk since the parent backup', async () => {
    const dir = tempDir('rt-retype');
    try {
      const mount = join(dir, 'mount');
      mkdirSync(mount);
      for (const name of ['to-dir', 'to-link', 'kept']) writeFileSync(join(mount, name), `${name} as a file`);
      writeFileSync(join(mount, 'lost'), randomBytes(100_000)); // incompressible: storing it again shows
      const a = await runBackup(await mountEngine(dir).openBackup(backupCtx(t.repo)));
      rmSync(join(mount, 'to-dir'));
      mkdirSync(join(mount, 'to-dir'));
      writeFileSync(join(mount, 'to-dir/inside'), 'now a directory');
      rmSync(join(mount, 'to-link'));
      symlinkSync('kept', join(mount, 'to-link'));
      // The parent says "lost" is stored, but its chunk is gone from the repository: read again.
      const lost = decodeTree(await t.repo.getTree(a.trees.root!)).find((e) => e.name.toString() === 'lost')!;
      const hasBlob = t.repo.hasBlob.bind(t.repo);
      const stored = t.repo.stats().bytes;
      t.repo.hasBlob = (id) => id !== lost.content!.chunks[0] && hasBlob(id);
      let b: ServiceArtifact;
      try {
        b = await runBackup(await mountEngine(dir).openBackup(backupCtx(t.repo, a)));
      } finally {
        t.repo.hasBlob = hasBlob;
      }
      expect(t.repo.stats().bytes - stored).toBeGreaterThan(100_000); // read and stored again
      await t.repo.flush();
      const other = tempDir('rt-retype-out');
      try {
        await runRestore(await mountEngine(other).openRestore(restoreCtx(await t.reopen()), b));
        expect(diffTrees(describeTree(mount, { withRoot: true }), describeTree(join(other, 'mount'), { withRoot: true }))).toEqual([]);
        expect(lstatSync(join(other, 'mount/to-dir')).isDirectory()).toBe(true);
        expect(lstatSync(join(other, 'mount/to-link')).isSymbolicLink()).toBe(true);
      } finally {
        rmSync(other, { recursive: true, force: true });
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('picks up changes made between prepare() and pin()', async () => {
    const dir = tempDir('rt-pin');
    try {
      const mount = join(dir, 'mount');
      mkdirSync(join(mount, 'a/b'), { recursive: true });
      writeFileSync(join(mount, 'a/b/file'), 'before');
      writeFileSync(join(mount, 'gone'), 'deleted after prepare');
      const session = await mountEngine(dir).openBackup(backupCtx(t.repo, undefined, 'safe'));
      await session.prepare();
      writeFileSync(join(mount, 'a/b/file'), 'after the pre-pass');
      rmSync(join(mount, 'gone'));
      mkdirSync(join(mount, 'new-dir'));
      writeFileSync(join(mount, 'new-dir/new'), 'new');
      await session.pin();
      const artifact = await session.stream();
      await session.close();
      const snapshot = describeTree(mount, { withRoot: true });
      await t.repo.flush();
      const other = tempDir('rt-pin-out');
      try {
        await runRestore(await mountEngine(other).openRestore(restoreCtx(await t.reopen()), artifact));
        expect(diffTrees(snapshot, describeTree(join(other, 'mount'), { withRoot: true }))).toEqual([]);
      } finally {
        rmSync(other, { recursive: true, force: true });
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('records a file that keeps changing while read', async () => {
    const dir = tempDir('rt-busy');
    const mount = join(dir, 'mount');
    mkdirSync(mount);
    writeFileSync(join(mount, 'busy.log'), 'x'.repeat(1 << 16));
    appendFileSync(join(mount, 'quiet'), 'still');
    // A writer appending on every turn of the event loop: each of the engine's awaited file calls
    // completes on a later turn, so the file changes between the walk's lstat and every read.
    let writing = true;
    const append = () => {
      if (!writing) return;
      appendFileSync(join(mount, 'busy.log'), 'line\n');
      setImmediate(append);
    };
    try {
      append();
      const artifact = await runBackup(await mountEngine(dir).openBackup(backupCtx(t.repo)));
      expect(artifact.warnings.join('\n')).toMatch(/busy\.log.*kept changing/);
      expect(artifact.warnings.join('\n')).not.toMatch(/quiet/);
    } finally {
      writing = false;
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('files engine excludes', () => {
  it('leaves excluded paths out of the backup', async () => {
    const t = await createTestRepo();
    const dir = tempDir('exclude');
    try {
      const mount = join(dir, 'mount');
      mkdirSync(join(mount, 'cache/deep'), { recursive: true });
      mkdirSync(join(mount, 'keep'));
      writeFileSync(join(mount, 'cache/deep/x'), 'cached');
      writeFileSync(join(mount, 'keep/a.tmp'), 'temp');
      writeFileSync(join(mount, 'keep/a.txt'), 'kept');
      const artifact = await runBackup(await mountEngine(dir, 'mount', ['cache/**', '*.tmp']).openBackup(backupCtx(t.repo)));
      const out = tempDir('exclude-out');
      try {
        await runRestore(await mountEngine(out).openRestore(restoreCtx(t.repo), artifact));
        expect(readdirSync(join(out, 'mount')).sort()).toEqual(['cache', 'keep']);
        expect(readdirSync(join(out, 'mount/cache'))).toEqual([]);
        expect(readdirSync(join(out, 'mount/keep'))).toEqual(['a.txt']);
      } finally {
        rmSync(out, { recursive: true, force: true });
      }
    } finally {
      await t.cleanup();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
