// The pin of a mount: the artifact is the mount as of pin(), whatever changes after it, and pin()
// finds every kind of change made between prepare() and pin() through its inotify change tracking,
// and through the stat walk it falls back to when events may have been lost.
import { appendFileSync, chmodSync, linkSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/core/log.js';
import { runBackup, runRestore, type BackupSession } from '../../src/engines/engine.js';
import { FilesBackupSession } from '../../src/engines/files/backup.js';
import type { ServiceArtifact } from '../../src/repo/types.js';
import { createTestRepo, type TestRepo } from '../helpers/repo.js';
import { backupCtx, mountEngine, restoreCtx, tempDir } from './harness.js';
import { describeTree, diffTrees, type EntryFacts } from './tree-compare.js';

describe('files engine pin', () => {
  let t: TestRepo;
  const dirs: string[] = [];

  beforeAll(async () => {
    t = await createTestRepo();
  });

  afterAll(async () => {
    await t?.cleanup();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  /**
   * A mount in a fresh temp dir, filled by `fill`, and a backup session on it that records info logs;
   * with `incremental`, the session has a backup of the filled mount as its parent.
   */
  async function setup(label: string, fill: (mount: string) => void, incremental = false, mode: 'safe' | 'live' = 'safe') {
    const base = tempDir(label);
    dirs.push(base);
    const mount = join(base, 'mount');
    mkdirSync(mount);
    fill(mount);
    const logs: string[] = [];
    const parent = incremental ? await runBackup(await mountEngine(base).openBackup(backupCtx(t.repo))) : undefined;
    const ctx = { ...backupCtx(t.repo, parent, mode), log: createLogger((_l, line) => logs.push(line), 'info') };
    const session = await mountEngine(base).openBackup(ctx);
    return { mount, session, logs };
  }

  async function restored(artifact: ServiceArtifact): Promise<Map<string, EntryFacts>> {
    await t.repo.flush();
    const out = tempDir('pin-out');
    dirs.push(out);
    await runRestore(await mountEngine(out).openRestore(restoreCtx(await t.reopen()), artifact));
    return describeTree(join(out, 'mount'), { withRoot: true });
  }

  async function finish(session: BackupSession): Promise<ServiceArtifact> {
    try {
      return await session.stream();
    } finally {
      await session.close();
    }
  }

  it('stores files as of pin(), not as of stream()', async () => {
    const { mount, session } = await setup('pin-freeze', (m) => {
      mkdirSync(join(m, 'a/b'), { recursive: true });
      writeFileSync(join(m, 'a/b/log'), 'line 1\n');
      writeFileSync(join(m, 'a/other'), 'other v1');
      writeFileSync(join(m, 'doomed'), 'removed after the pin');
    });
    await session.prepare();
    appendFileSync(join(mount, 'a/b/log'), 'line 2\n'); // changed before the pin: must be read by it
    await session.pin();
    const atPin = describeTree(mount, { withRoot: true });
    // Traffic released: the application keeps writing while stream() runs.
    appendFileSync(join(mount, 'a/b/log'), 'line 3\n');
    writeFileSync(join(mount, 'a/other'), 'other v2, longer');
    rmSync(join(mount, 'doomed'));
    writeFileSync(join(mount, 'a/b/late'), 'created after the pin');
    const artifact = await finish(session);
    const got = await restored(artifact);
    expect(diffTrees(atPin, got)).toEqual([]);
    expect(got.get('/a/b/log')?.size).toBe('line 1\nline 2\n'.length);
    expect(got.has('/a/b/late')).toBe(false);
    expect(got.has('/doomed')).toBe(true);
  });

  async function everyKindOfChange(label: string, incremental = false): Promise<void> {
    const { mount, session, logs } = await setup(label, (m) => {
      mkdirSync(join(m, 'keep/deep/deeper'), { recursive: true });
      writeFileSync(join(m, 'keep/deep/deeper/untouched'), 'same');
      writeFileSync(join(m, 'keep/deep/deeper/edited'), 'v1');
      // Two levels below a directory with no change of its own ("calm" is only on the way to it).
      mkdirSync(join(m, 'calm/a/b'), { recursive: true });
      writeFileSync(join(m, 'calm/a/b/f'), 'v1');
      mkdirSync(join(m, 'replaced/sub'), { recursive: true });
      writeFileSync(join(m, 'replaced/sub/f'), 'old tree');
      mkdirSync(join(m, 'moved/inner'), { recursive: true });
      writeFileSync(join(m, 'moved/inner/f'), 'travels');
      mkdirSync(join(m, 'links/one'), { recursive: true });
      mkdirSync(join(m, 'links/two'));
      writeFileSync(join(m, 'links/one/a'), 'shared v1');
      linkSync(join(m, 'links/one/a'), join(m, 'links/two/b'));
      mkdirSync(join(m, 'perm'));
      writeFileSync(join(m, 'perm/f'), 'x');
      writeFileSync(join(m, 'target-old'), 'overwritten by a rename');
      symlinkSync('somewhere', join(m, 'link'));
      mkdirSync(join(m, 'many'));
      for (let i = 0; i < 300; i++) writeFileSync(join(m, `many/f${i}`), `v1 ${i}`);
    }, incremental);
    await session.prepare();
    writeFileSync(join(mount, 'keep/deep/deeper/edited'), 'v2 is longer');
    writeFileSync(join(mount, 'calm/a/b/f'), 'v2, deep below calm');
    rmSync(join(mount, 'replaced'), { recursive: true });
    mkdirSync(join(mount, 'replaced/sub'), { recursive: true });
    writeFileSync(join(mount, 'replaced/sub/f'), 'new tree');
    renameSync(join(mount, 'moved'), join(mount, 'keep/moved-here'));
    mkdirSync(join(mount, 'fresh/x/y'), { recursive: true });
    writeFileSync(join(mount, 'fresh/x/y/z'), 'new subtree');
    writeFileSync(join(mount, 'links/one/a'), 'shared v2, written through one name'); // same inode
    chmodSync(join(mount, 'perm'), 0o700);
    chmodSync(join(mount, 'perm/f'), 0o600);
    writeFileSync(join(mount, 'tmp'), 'renamed over another file');
    renameSync(join(mount, 'tmp'), join(mount, 'target-old'));
    rmSync(join(mount, 'link'));
    symlinkSync('elsewhere', join(mount, 'link'));
    // More changed names than pin() remembers per directory: that directory is listed again whole.
    for (let i = 0; i < 300; i++) writeFileSync(join(mount, `many/f${i}`), `v2 ${i}`);
    rmSync(join(mount, 'many/f7'));
    await session.pin();
    const atPin = describeTree(mount, { withRoot: true });
    const artifact = await finish(session);
    expect(logs.join('\n')).not.toMatch(/change tracking unavailable/);
    const got = await restored(artifact);
    expect(diffTrees(atPin, got)).toEqual([]);
    expect(got.get('/links/two/b')?.sha256).toBe(atPin.get('/links/one/a')?.sha256);
    expect(got.has('/keep/moved-here/inner/f')).toBe(true);
    expect(got.has('/moved')).toBe(false);
    expect(got.has('/many/f7')).toBe(false);
    expect(got.get('/many/f299')?.size).toBe('v2 299'.length);
    expect(got.get('/calm/a/b/f')?.size).toBe('v2, deep below calm'.length);
    const counted = (type: string) => [...atPin.values()].filter((f) => f.type === type).length; // the root ('.') included
    expect(artifact.meta).toMatchObject({ files: counted('file'), dirs: counted('dir') });
  }

  it('finds every kind of change made between prepare() and pin() through its watches', async () => {
    await everyKindOfChange('pin-kinds');
  });

  it('finds them too when prepare() stored its trees already (a mount beyond the tree memory budget)', async () => {
    const budget = FilesBackupSession.treeBudget;
    FilesBackupSession.treeBudget = 0; // every finished directory is stored and read back by pin()
    try {
      await everyKindOfChange('pin-spilled');
    } finally {
      FilesBackupSession.treeBudget = budget;
    }
  });

  it('finds them too with every lstat on the thread pool (as once a slow disk was seen)', async () => {
    FilesBackupSession.callsOnThread = false;
    try {
      await everyKindOfChange('pin-pool');
    } finally {
      FilesBackupSession.callsOnThread = true;
    }
  });

  it("finds them too when prepare() took every unchanged directory's tree from the parent backup", async () => {
    await everyKindOfChange('pin-reused', true);
  });

  it('drops the pre-pass warning of a file that kept changing then, once pin() reads it cleanly', async () => {
    const { mount, session, logs } = await setup('pin-settled', (m) => {
      writeFileSync(join(m, 'busy.log'), 'x'.repeat(1 << 16));
    });
    // Appends on every turn of the event loop while prepare() runs, then stops before the pin.
    let writing = true;
    const append = () => {
      if (!writing) return;
      appendFileSync(join(mount, 'busy.log'), 'line\n');
      setImmediate(append);
    };
    append();
    try {
      await session.prepare();
    } finally {
      writing = false;
    }
    expect(logs.join('\n')).toMatch(/busy\.log"? kept changing/);
    await session.pin();
    const atPin = describeTree(mount, { withRoot: true });
    const artifact = await finish(session);
    expect(artifact.warnings).toEqual([]);
    expect(diffTrees(atPin, await restored(artifact))).toEqual([]);
  });

  it('falls back to a stat walk when inotify events may have been lost, and says so', async () => {
    const { mount, session, logs } = await setup('pin-overflow', (m) => {
      mkdirSync(join(m, 'busy'));
      mkdirSync(join(m, 'quiet/inner'), { recursive: true });
      writeFileSync(join(m, 'quiet/inner/f'), 'v1');
    });
    await session.prepare();
    // One synchronous burst of about 18,000 events (create + modify per file) overflows the default
    // kernel queue of 16,384: events after that are dropped, the change below among them.
    for (let i = 0; i < 9000; i++) writeFileSync(join(mount, `busy/f${i}`), 'x');
    writeFileSync(join(mount, 'quiet/inner/f'), 'v2, after the flood');
    await session.pin();
    const atPin = describeTree(mount, { withRoot: true });
    const artifact = await finish(session);
    const got = await restored(artifact);
    expect(diffTrees(atPin, got)).toEqual([]);
    expect(got.get('/quiet/inner/f')?.size).toBe('v2, after the flood'.length);
    expect(logs.join('\n')).toMatch(/change tracking unavailable \(the inotify event queue may have overflowed\)/);
  });
  /** inotify watches this process holds (fdinfo lists one "inotify wd:" line per watch). */
  function inotifyWatches(): number {
    let n = 0;
    for (const fd of readdirSync('/proc/self/fdinfo')) {
      try {
        n += (readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8').match(/^inotify wd:/gm) ?? []).length;
      } catch {
        // closed meanwhile
      }
    }
    return n;
  }

  it('a live backup sets no watches and records the mount as its walk found it', async () => {
    const fill = (m: string) => {
      mkdirSync(join(m, 'a/b'), { recursive: true });
      writeFileSync(join(m, 'a/b/file'), 'as walked');
    };
    const before = inotifyWatches();
    const safe = await setup('pin-safe-watches', fill);
    await safe.session.prepare();
    expect(inotifyWatches() - before).toBeGreaterThanOrEqual(3); // the mount, a and a/b
    await safe.session.close();
    const { mount, session } = await setup('pin-live', fill, false, 'live');
    const walked = describeTree(mount, { withRoot: true });
    await session.prepare();
    expect(inotifyWatches()).toBe(before);
    writeFileSync(join(mount, 'a/b/file'), 'changed after the walk, with no hold to pin inside');
    await session.pin();
    const got = await restored(await finish(session));
    expect(diffTrees(walked, got)).toEqual([]);
  });
});

