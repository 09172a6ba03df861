// Backup of one mount. prepare() watches every directory (inotify through fs.watch) from before it
// lists it, reads and stores every file while traffic flows (reusing the parent backup's chunk lists
// for unchanged files) and keeps each directory's entries as an encoded tree in memory. pin() rescans
// only the directories that had events since their pre-pass listing and stores the changed files'
// contents then, inside the hold, so the artifact is the mount as of the pin. stream() only writes
// the tree objects bottom-up. Without usable change tracking, pin() stat-walks every entry instead.
import { closeSync, constants as FS, fstatSync, lstatSync, openSync, promises as fsp, readFileSync, readSync, watch, type BigIntStats, type FSWatcher } from 'node:fs';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { pipeline } from 'node:stream/promises';
import { BunkerError } from '../../core/errors.js';
import type { BackupContext, BackupSession } from '../engine.js';
import type { BlobId, ServiceArtifact, StreamRef } from '../../repo/types.js';
import { decodeTree, encodeTree, FLAG_SPARSE, FLAG_UNSTABLE, FLAG_XATTRS, type EntryType, type TreeEntry } from '../../repo/tree.js';
import * as io from './fsio.js';
import { nativeFs } from './native.js';
import { compileExcludes, joinPath, limiter, mapLimit, nameKey, showPath } from './paths.js';

export const FILES_FORMAT = 1;

/** Files up to this size are read whole and stored with storeBuffer(); larger ones are streamed. */
const SMALL_FILE = 1 << 20;
const READ_BLOCK = 1 << 20;
const FILE_READS = 8;
const LARGE_FILE_READS = 2;
const DIR_FANOUT = 4;
/** Entries described at once per directory: mostly lstat calls, which the thread pool overlaps well. */
const ENTRY_FANOUT = 64;
const MAX_WARNINGS = 100;
/** Stands in for a subdirectory's tree id in the trees kept between prepare() and stream(). */
const PENDING_ID: BlobId = '0'.repeat(64);
/** Beyond this many watched directories per mount, pin() stat-walks instead (inotify watches are a per-user budget). */
const MAX_WATCHES = 65_536;
/**
 * Encoded trees kept in memory between prepare() and stream(). Beyond this, each finished subtree is
 * stored in the repository as prepare() completes it and only its id is kept (pin() reads back the
 * few it needs): a mount of millions of files keeps a bounded amount of tree data in memory.
 */
const TREE_BUDGET = 16 << 20;
/**
 * Files up to this size are opened, read, fstat'ed and closed on the main thread while the page cache
 * serves them (io.ThreadCalls), like every lstat: four pool round trips per small file were most of a
 * first backup's system time.
 */
const THREAD_READ_BYTES = 64 << 10;
/** Names remembered per directory from its events; beyond this, pin() lists the directory again. */
const MAX_CHANGED_NAMES = 256;

/**
 * libuv drops inotify's queue-overflow event, so an overflow cannot be seen directly. Every event of
 * one read burst is delivered within one turn of the event loop; a burst near the kernel's queue size
 * (shared by every watcher in the process) means events may have been lost. Sessions compare this
 * epoch at pin() with the one they started with.
 */
const QUEUE_SIZE = (() => {
  try {
    return Number(readFileSync('/proc/sys/fs/inotify/max_queued_events', 'utf8')) || 16_384;
  } catch {
    return 16_384;
  }
})();
let burst = 0;
let overflowEpoch = 0;
function countEvent(): void {
  if (burst++ === 0) setImmediate(() => (burst = 0));
  if (burst === Math.floor(QUEUE_SIZE / 4)) overflowEpoch++;
}

export function entryType(st: io.EntryStat): EntryType | undefined {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'dir';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isFIFO()) return 'fifo';
  if (st.isSocket()) return 'socket';
  if (st.isCharacterDevice()) return 'chardev';
  if (st.isBlockDevice()) return 'blockdev';
  return undefined;
}

function entryFromStat(name: Buffer, type: EntryType, st: io.EntryStat): TreeEntry {
  return {
    name,
    type,
    mode: Number(st.mode & 0o7777n),
    uid: Number(st.uid),
    gid: Number(st.gid),
    mtimeNs: st.mtimeNs,
    ctimeNs: st.ctimeNs,
    ino: st.ino,
    flags: 0,
  };
}

/** A file's entry from its stat, with the content, xattrs and flags its parent entry recorded. */
function reusedEntry(name: Buffer, prev: TreeEntry, st: io.EntryStat): TreeEntry {
  const entry = entryFromStat(name, 'file', st);
  entry.content = prev.content;
  entry.xattrs = prev.xattrs;
  entry.flags = prev.flags;
  return entry;
}

/** True when the stat shows the entry as it was recorded (same inode, times, size, owner and mode). */
function unchanged(prev: TreeEntry, st: io.EntryStat, type: EntryType): boolean {
  return (
    prev.type === type &&
    prev.ino === st.ino &&
    prev.mtimeNs === st.mtimeNs &&
    prev.ctimeNs === st.ctimeNs &&
    prev.mode === Number(st.mode & 0o7777n) &&
    prev.uid === Number(st.uid) &&
    prev.gid === Number(st.gid) &&
    (type !== 'file' || prev.content?.size === Number(st.size))
  );
}

function isKept(record: Kept | Spilled): record is Kept {
  return 'tree' in record;
}

function isMissing(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException)?.code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

/**
 * A directory's entries, encoded as they will be stored; `leaf` (its files and their bytes) when it
 * has no subdirectories, so stream() stores it without decoding it again.
 */
interface Kept {
  tree: Buffer;
  leaf?: { files: number; size: number };
}

/** A directory whose tree prepare() stored already, with what its subtree holds (for the artifact's totals). */
interface Spilled {
  id: BlobId;
  files: number;
  dirs: number;
  size: number;
}

interface ReadResult {
  content: StreamRef;
  st: io.EntryStat;
  unstable: boolean;
  /** The file's user xattrs, read through the open descriptor (null: not read, ask by path). */
  xattrs: Array<[Buffer, Buffer]> | undefined | null;
}

export interface RootMeta {
  mode: number;
  uid: number;
  gid: number;
  mtimeNs: string;
  xattrs: Array<[string, string]>; // base64 name, base64 value
}

export class FilesBackupSession implements BackupSession {
  private readonly rootBuf: Buffer;
  private readonly excluded: (relPath: string) => boolean;
  private readonly hasExcludes: boolean;
  /**
   * Every directory seen by prepare() (brought up to date by pin()), keyed by relative path (latin1):
   * its encoded entries, or once spilled the id of its stored tree (its subtrees are stored too) and
   * what the subtree holds.
   */
  private prepared = new Map<string, Kept | Spilled>();
  /** Bytes of encoded trees held in `prepared`; the budget is a static so tests can force spilling. */
  private treeBytes = 0;
  static treeBudget = TREE_BUDGET;
  private lastSpilled: BlobId | undefined;
  private pinned = false;
  private rootMeta: RootMeta | undefined;
  /** Watched directories and the inode watched: a directory replaced since has lost its watch. */
  private watchers = new Map<string, { watcher: FSWatcher; ino: bigint }>();
  /** Directories with events since the pre-pass began listing them: the names the events named, or 'all'. */
  private changed = new Map<string, Set<string> | 'all'>();
  /** Directories whose watch saw themselves moved or deleted: rescanned whole by pin(). */
  private lostWatch = new Set<string>();
  /** Why change tracking cannot be trusted (pin() then stat-walks everything). */
  private watchFailure: string | undefined;
  private startEpoch = overflowEpoch;
  /** Directories holding hard-linked files: a write through another name gives no event here. */
  private linkDirs = new Set<string>();
  /** Hard links: (dev, ino) → the link group number shared by every name of that inode. */
  private linkGroups = new Map<string, number>();
  /** Hard links read in the current pass: (dev, ino) → the read in flight, so an inode is read once. */
  private linkReads = new Map<string, Promise<ReadResult>>();
  private readonly reads = limiter(FILE_READS);
  private readonly largeReads = limiter(LARGE_FILE_READS);
  /** Keyed by the path they are about, so a file read again by pin() replaces what the pre-pass said of it. */
  private warnings = new Map<string, string>();
  private droppedWarnings = 0;
  private bytesRead = 0;
  private lastProgress = 0;
  /** lstat and small-file reads on the main thread while cached (the static lets tests force the pool). */
  static callsOnThread = true;
  private readonly onThread = new io.ThreadCalls(FilesBackupSession.callsOnThread);

  constructor(
    private readonly root: string,
    excludes: readonly string[],
    private readonly ctx: BackupContext,
  ) {
    this.rootBuf = Buffer.from(root);
    this.excluded = compileExcludes(excludes);
    this.hasExcludes = excludes.length > 0;
  }

  async prepare(): Promise<void> {
    this.startEpoch = overflowEpoch;
    let rootSt: BigIntStats;
    try {
      rootSt = await fsp.lstat(this.root, { bigint: true });
    } catch (err) {
      throw new BunkerError('unreachable', `mount directory ${showPath(this.root)} cannot be read: ${(err as Error).message}`, {
        cause: err,
        hint: 'Check the mount path in bunker.yaml (it is relative to the folder holding bunker.yaml).',
      });
    }
    if (!rootSt.isDirectory()) {
      throw new BunkerError('unreachable', `mount path ${showPath(this.root)} is not a directory`, {
        hint: 'Point the mount at a directory.',
      });
    }
    const parent = this.ctx.parent;
    let parentRoot: BlobId | undefined;
    if (parent && parent.engine === 'files' && parent.format === FILES_FORMAT && parent.trees.root) parentRoot = parent.trees.root;
    await this.prepareDir('', this.rootBuf, parentRoot);
    // Reading a tree that is still queued makes the repository write its open packs: done now, once,
    // so pin() reads spilled trees back without writing packs inside the hold.
    if (this.lastSpilled) await this.ctx.repo.getTree(this.lastSpilled);
  }

  /** The entries recorded for a directory, from memory or read back from the repository. */
  private async cachedEntries(rel: string): Promise<TreeEntry[] | undefined> {
    const cached = this.prepared.get(rel);
    if (cached === undefined) return undefined;
    return decodeTree(isKept(cached) ? cached.tree : await this.ctx.repo.getTree(cached.id));
  }

  /** Records a directory's entries, encoded as they will be stored. */
  private keep(rel: string, entries: readonly TreeEntry[]): void {
    const kept: Kept = { tree: encodeTree(entries) };
    // Totals of a directory without subdirectories, so stream() need not decode it again (a changed
    // file in each of 100 folders meant decoding 20,000 entries only to count them).
    if (!entries.some((e) => e.type === 'dir')) {
      kept.leaf = { files: 0, size: 0 };
      for (const e of entries) {
        if (e.type !== 'file') continue;
        kept.leaf.files++;
        kept.leaf.size += e.content?.size ?? 0;
      }
    }
    const old = this.prepared.get(rel);
    if (old && isKept(old)) this.treeBytes -= old.tree.length;
    this.prepared.set(rel, kept);
    this.treeBytes += kept.tree.length;
  }

  /** Stores a finished directory's tree and every subtree still in memory; keeps only the ids and totals. */
  private async spill(rel: string): Promise<Spilled> {
    const cached = this.prepared.get(rel);
    if (cached === undefined) throw new BunkerError('engine', `internal error: no entries recorded for ${showPath(Buffer.from(rel || '.', 'latin1'))}`);
    if (!isKept(cached)) return cached;
    const totals = { files: 0, dirs: 1, size: 0 };
    let tree = cached.tree;
    if (cached.leaf) {
      totals.files = cached.leaf.files;
      totals.size = cached.leaf.size;
    } else {
      const entries = decodeTree(cached.tree);
      for (const e of entries) {
        if (e.type === 'file') {
          totals.files++;
          totals.size += e.content?.size ?? 0;
        } else if (e.type === 'dir') {
          const child = await this.spill(childRel(rel, e.name));
          e.subtree = child.id;
          totals.files += child.files;
          totals.dirs += child.dirs;
          totals.size += child.size;
        }
      }
      tree = encodeTree(entries);
    }
    const id = await this.ctx.repo.putTree(tree);
    const spilled = { id, ...totals };
    this.prepared.set(rel, spilled);
    this.treeBytes -= cached.tree.length;
    this.lastSpilled = id;
    return spilled;
  }

  private async prepareDir(rel: string, abs: Buffer, prevTree: BlobId | undefined): Promise<void> {
    // The parent's tree is fetched while the directory is listed.
    const prevLoad = prevTree
      ? this.ctx.repo.getTree(prevTree).then(
          (blob) => byName(decodeTree(blob, { withEncoded: true })),
          (err: unknown) => {
            this.ctx.log.warn(`files: parent tree of ${showPath(Buffer.from(rel || '.', 'latin1'))} unreadable, reading its files again: ${(err as Error).message}`);
            return undefined;
          },
        )
      : undefined;
    // Watched before it is listed: any change after the listing starts has an event.
    await this.watchDir(rel, abs);
    this.changed.delete(rel);
    const [entries, prev] = await Promise.all([this.scanDir(rel, abs, prevLoad), prevLoad]);
    // Entries all as the parent backup recorded them: if the subdirectories also come out as the
    // parent's subtrees, this directory's tree is the parent's byte for byte and is not encoded.
    // (A file entry carrying the parent's bytes was found equal to its parent entry by describe().)
    const asBefore =
      prevTree !== undefined &&
      prev !== undefined &&
      entries.length === prev.size &&
      entries.every((e) => e.encoded !== undefined || sameEntry(e, prev.get(nameKey(e.name))));
    if (!asBefore) this.keep(rel, entries);
    if (entries.some((e) => e.linkGroup !== undefined)) this.linkDirs.add(rel);
    const dirs = entries.filter((e) => e.type === 'dir');
    await mapLimit(dirs, DIR_FANOUT, (e) => {
      const p = prev?.get(nameKey(e.name));
      return this.prepareDir(childRel(rel, e.name), joinPath(abs, e.name), p?.type === 'dir' ? p.subtree : undefined);
    });
    if (asBefore && !this.reuseTree(rel, entries, prev, prevTree)) this.keep(rel, entries);
    if (this.treeBytes > FilesBackupSession.treeBudget) await this.spill(rel);
  }

  /**
   * Records an unchanged directory as the parent backup's tree (nothing to encode, hash or store)
   * when every subdirectory was recorded as the parent's subtree too and the repository still has it.
   */
  private reuseTree(rel: string, entries: TreeEntry[], prev: Map<string, TreeEntry>, prevTree: BlobId): boolean {
    if (!this.ctx.repo.hasBlob(prevTree)) return false;
    const totals = { files: 0, dirs: 1, size: 0 };
    for (const e of entries) {
      if (e.type === 'file') {
        totals.files++;
        totals.size += e.content!.size;
      } else if (e.type === 'dir') {
        const child = this.prepared.get(childRel(rel, e.name));
        if (child === undefined || isKept(child) || child.id !== prev.get(nameKey(e.name))!.subtree) return false;
        totals.files += child.files;
        totals.dirs += child.dirs;
        totals.size += child.size;
      }
    }
    this.prepared.set(rel, { id: prevTree, ...totals });
    return true;
  }

  private async watchDir(rel: string, abs: Buffer): Promise<void> {
    // A live backup has no hold to pin inside: the mount is recorded as the walk found it, as restic
    // and borg record it, and the watches (~0.2 ms per directory) would serve nothing.
    if (this.watchFailure || this.ctx.mode === 'live') return;
    if (this.watchers.size >= MAX_WATCHES) return this.failWatching(`more than ${MAX_WATCHES} directories`);
    const base = rel ? Buffer.from(rel.slice(rel.lastIndexOf('/') + 1), 'latin1') : Buffer.from(this.root.slice(this.root.lastIndexOf('/') + 1));
    let watcher: FSWatcher;
    try {
      watcher = watch(abs, { persistent: false, encoding: 'buffer' }, (type, name) => {
        countEvent();
        const names = this.changed.get(rel);
        if (names === 'all') return;
        if (!name || (names && names.size >= MAX_CHANGED_NAMES)) this.changed.set(rel, 'all');
        else if (names) names.add(nameKey(name as unknown as Buffer));
        else this.changed.set(rel, new Set([nameKey(name as unknown as Buffer)]));
        // The watch reports its own directory's move or deletion under the directory's own name (a
        // child of that name is treated alike: a needless full rescan, never a missed change).
        if (type === 'rename' && name && base.equals(name as unknown as Buffer)) this.lostWatch.add(rel);
      });
    } catch (err) {
      if (isMissing(err)) return; // gone already: its parent had an event
      return this.failWatching((err as NodeJS.ErrnoException).code === 'ENOSPC' ? 'the inotify watch limit was reached' : (err as Error).message);
    }
    watcher.on('error', (err) => this.failWatching(err.message));
    try {
      const st = await fsp.lstat(abs, { bigint: true });
      this.watchers.set(rel, { watcher, ino: st.ino });
    } catch (err) {
      watcher.close();
      if (!isMissing(err)) throw err;
    }
  }

  private failWatching(reason: string): void {
    if (this.watchFailure) return;
    this.watchFailure = reason;
    this.closeWatchers();
  }

  private closeWatchers(): void {
    for (const { watcher } of this.watchers.values()) watcher.close();
    this.watchers.clear();
  }

  /**
   * Brings the pre-pass's trees up to the present and stores every file changed since, so the
   * artifact is the mount as of this call. Only directories with watch events (or without a valid
   * watch) are listed again; without change tracking, a stat walk of every entry finds them. A live
   * backup keeps the walk's trees as they are (there is no hold, so no moment to bring them up to).
   */
  async pin(): Promise<void> {
    // Two turns of the event loop: the second one's poll phase reads every inotify event queued
    // before this call, wherever in the loop pin() was called from.
    await nextTurn();
    await nextTurn();
    if (!this.watchFailure && overflowEpoch !== this.startEpoch) this.failWatching('the inotify event queue may have overflowed');
    this.linkReads.clear(); // contents read now, not the pre-pass's
    const rootSt = await fsp.lstat(this.root, { bigint: true });
    this.rootMeta = {
      mode: Number(rootSt.mode & 0o7777n),
      uid: Number(rootSt.uid),
      gid: Number(rootSt.gid),
      mtimeNs: rootSt.mtimeNs.toString(),
      xattrs: nativeFs().userXattrs(this.rootBuf).map(([n, v]) => [n.toString('base64'), v.toString('base64')]),
    };
    if (this.ctx.mode === 'live') {
      this.pinned = true;
      return;
    }
    let dirty: Map<string, Set<string> | 'all'>;
    let tracked: boolean;
    if (this.watchFailure) {
      this.ctx.log.info(`files: change tracking unavailable (${this.watchFailure}); pin() stat-walks every entry of ${showPath(this.rootBuf)}`);
      const walked = new Set<string>();
      await this.statWalk('', this.rootBuf, walked);
      dirty = new Map([...walked].map((rel) => [rel, 'all']));
      tracked = false;
    } else {
      dirty = new Map(this.changed);
      for (const rel of this.linkDirs) dirty.set(rel, 'all');
      tracked = true;
    }
    // The ancestors of dirty directories are walked (decoded, not listed) to reach them.
    const onPath = new Set<string>();
    for (const rel of dirty.keys()) {
      for (let i = rel.lastIndexOf('/'); i > 0; i = rel.lastIndexOf('/', i - 1)) onPath.add(rel.slice(0, i));
      if (rel) onPath.add('');
    }
    const rootTrusted = !tracked || this.trusted('', rootSt.ino);
    await this.refreshDir('', this.rootBuf, dirty, onPath, tracked, !rootTrusted);
    this.pinned = true;
  }

  /** A tracked directory is trusted when its watch still covers the same inode and saw nothing of its own move. */
  private trusted(rel: string, ino: bigint): boolean {
    const w = this.watchers.get(rel);
    return w !== undefined && w.ino === ino && !this.lostWatch.has(rel);
  }

  private async refreshDir(
    rel: string,
    abs: Buffer,
    dirty: Map<string, Set<string> | 'all'>,
    onPath: Set<string>,
    tracked: boolean,
    rescan: boolean,
  ): Promise<void> {
    const cached = await this.cachedEntries(rel);
    const record = this.prepared.get(rel);
    const spilled = record !== undefined && !isKept(record);
    const names = dirty.get(rel);
    const fullScan = cached === undefined || rescan || names === 'all';
    let entries: TreeEntry[];
    if (fullScan) {
      entries = await this.scanDir(rel, abs, cached ? byName(cached) : undefined);
    } else if (names !== undefined) {
      // Only the names the events named are described again: a stat (and a read when changed) each.
      const byKey = byName(cached);
      await mapLimit([...names], ENTRY_FANOUT, async (key) => {
        const name = Buffer.from(key, 'latin1');
        const entry = this.hasExcludes && this.excluded(relText(rel, name)) ? undefined : await this.describe(rel, joinPath(abs, name), name, byKey.get(key));
        if (entry) byKey.set(key, entry);
        else byKey.delete(key);
      });
      entries = [...byKey.values()];
    } else {
      entries = cached;
    }
    let patched = false;
    let walked = false;
    await mapLimit(
      entries.filter((e) => e.type === 'dir'),
      DIR_FANOUT,
      async (e) => {
        const child = childRel(rel, e.name);
        const childAbs = joinPath(abs, e.name);
        const untrusted = tracked && !this.trusted(child, e.ino);
        if (untrusted || dirty.has(child) || onPath.has(child)) {
          walked = true;
          await this.refreshDir(child, childAbs, dirty, onPath, tracked, untrusted);
        }
        // A change inside a directory changes its own mtime, which its parent's entry records and
        // which raises no event in the parent.
        if (!fullScan && dirty.has(child)) {
          const fresh = await this.describe(rel, childAbs, e.name, undefined);
          if (fresh?.type === 'dir') {
            Object.assign(e, { ...fresh, subtree: PENDING_ID });
            patched = true;
          }
        }
      },
    );
    // A spilled directory with a subdirectory walked here is on the way to a change below it: its
    // stored tree names the old subtree ids, so it is kept as entries again and rebuilt by stream().
    if (fullScan || names !== undefined || patched || (spilled && walked)) this.keep(rel, entries);
  }

  /** The fallback: a stat of every entry, adding to `dirty` the directories that differ from the pre-pass. */
  private async statWalk(rel: string, abs: Buffer, dirty: Set<string>): Promise<void> {
    const cached = await this.cachedEntries(rel);
    if (!cached) {
      dirty.add(rel); // new since prepare(): listed whole
      return;
    }
    const prev = byName(cached);
    let names: Buffer[];
    try {
      names = await fsp.readdir(abs, { encoding: 'buffer' });
    } catch (err) {
      if (isMissing(err)) return; // removed since prepare(): its parent is dirty and drops it
      throw err;
    }
    if (this.hasExcludes) names = names.filter((name) => !this.excluded(relText(rel, name)));
    let isDirty = names.length !== prev.size;
    const subdirs: Buffer[] = [];
    await mapLimit(names, ENTRY_FANOUT * 2, async (name) => {
      const p = prev.get(nameKey(name));
      let st: BigIntStats;
      try {
        st = await this.lstat(joinPath(abs, name));
      } catch (err) {
        if (!isMissing(err)) throw err;
        isDirty = true;
        return;
      }
      const type = entryType(st);
      if (!p || !type || !unchanged(p, st, type) || (p.flags & FLAG_UNSTABLE) !== 0) isDirty = true;
      if (type === 'dir') subdirs.push(name);
    });
    if (isDirty) dirty.add(rel);
    await mapLimit(subdirs, DIR_FANOUT, (name) => this.statWalk(childRel(rel, name), joinPath(abs, name), dirty));
  }

  async stream(): Promise<ServiceArtifact> {
    if (!this.pinned) await this.pin();
    this.closeWatchers();
    const totals = { files: 0, dirs: 0, size: 0 };
    const rootId = await this.buildDir('', totals);
    const root = this.rootMeta!;
    const warnings = [...this.warnings.values()];
    if (this.droppedWarnings > 0) warnings.push(`... and ${this.droppedWarnings} more warnings`);
    return {
      engine: 'files',
      format: FILES_FORMAT,
      streams: {},
      trees: { root: rootId },
      meta: { root, files: totals.files, dirs: totals.dirs },
      size: totals.size,
      warnings,
    };
  }

  /** Writes the tree of one directory (after its subdirectories) and returns its id. */
  private async buildDir(rel: string, totals: { files: number; dirs: number; size: number }): Promise<BlobId> {
    const cached = this.prepared.get(rel);
    this.prepared.delete(rel); // built once; frees the copy as the walk goes
    // pin() listed every directory the pinned trees reach that the pre-pass had not.
    if (cached === undefined) throw new BunkerError('engine', `internal error: no entries recorded for ${showPath(Buffer.from(rel || '.', 'latin1'))}`);
    if (!isKept(cached)) {
      totals.files += cached.files;
      totals.dirs += cached.dirs;
      totals.size += cached.size;
      return cached.id;
    }
    totals.dirs++;
    if (cached.leaf) {
      // No subdirectories: already encoded exactly as it will be stored.
      totals.files += cached.leaf.files;
      totals.size += cached.leaf.size;
      return this.ctx.repo.putTree(cached.tree);
    }
    const entries = decodeTree(cached.tree);
    for (const e of entries) {
      if (e.type !== 'file') continue;
      totals.files++;
      totals.size += e.content?.size ?? 0;
    }
    await mapLimit(
      entries.filter((e) => e.type === 'dir'),
      DIR_FANOUT,
      async (e) => {
        e.subtree = await this.buildDir(childRel(rel, e.name), totals);
      },
    );
    return this.ctx.repo.putTree(encodeTree(entries));
  }

  /** Lists one directory and describes every entry; files are read unless `prev` shows them unchanged. */
  private async scanDir(
    rel: string,
    abs: Buffer,
    prevLoad: Map<string, TreeEntry> | Promise<Map<string, TreeEntry> | undefined> | undefined,
  ): Promise<TreeEntry[]> {
    if (this.ctx.signal.aborted) throw new BunkerError('aborted', 'the backup was cancelled');
    let listing: { names: Buffer[]; stats?: Array<io.EntryStat | null> };
    let prev: Map<string, TreeEntry> | undefined;
    try {
      // Names and their lstat in one thread-pool trip, while the parent's tree is decoded here.
      [listing, prev] = await Promise.all([io.listDir(abs), prevLoad]);
    } catch (err) {
      if (isMissing(err)) {
        this.warn(rel, `directory ${showPath(Buffer.from(rel, 'latin1'))} disappeared during the backup`);
        return [];
      }
      throw new BunkerError('engine', `cannot list ${showPath(abs)}: ${(err as Error).message}`, { cause: err });
    }
    const { names, stats } = listing;
    // Files the parent recorded as they are now are described here, in one synchronous pass: most
    // entries of a backup after the first, and an async describe() each (a promise and a turn per
    // entry) was a large share of an unchanged walk. The rest go through describe().
    const results = new Array<TreeEntry | undefined>(names.length);
    const others: number[] = [];
    for (let i = 0; i < names.length; i++) {
      const name = names[i]!;
      if (this.hasExcludes && this.excluded(relText(rel, name))) continue;
      const p = prev?.get(nameKey(name));
      const st = stats?.[i];
      const kept = p && st ? this.unchangedFile(name, p, st) : undefined;
      if (kept) results[i] = kept;
      else others.push(i);
    }
    await mapLimit(others, ENTRY_FANOUT, async (i) => {
      results[i] = await this.describe(rel, joinPath(abs, names[i]!), names[i]!, prev?.get(nameKey(names[i]!)), stats?.[i]);
    });
    return results.filter((e): e is TreeEntry => e !== undefined);
  }

  /**
   * The entry for a file that is not hard-linked and that the parent recorded as it is now (not
   * unstable, every chunk still stored): the parent's content and, when every field is the same, its
   * encoded bytes. Undefined when the file has to be described (and read) again.
   */
  private unchangedFile(name: Buffer, prev: TreeEntry, st: io.EntryStat): TreeEntry | undefined {
    if (!st.isFile() || st.nlink > 1n || !this.reusable(prev, st)) return undefined;
    const entry = reusedEntry(name, prev, st);
    if (prev.encoded && sameEntry(entry, prev)) entry.encoded = prev.encoded;
    return entry;
  }

  /** Whether a file's recorded content still stands: stat as recorded, not unstable, every chunk stored. */
  private reusable(prev: TreeEntry | undefined, st: io.EntryStat): prev is TreeEntry {
    // An entry recorded as unstable is read again even when its stat now matches.
    return prev !== undefined && !(prev.flags & FLAG_UNSTABLE) && unchanged(prev, st, 'file') && prev.content!.chunks.every((c) => this.ctx.repo.hasBlob(c));
  }

  private async lstat(path: Buffer): Promise<BigIntStats> {
    return (await this.onThread.ready()) ? this.onThread.run(() => lstatSync(path, { bigint: true })) : io.lstat(path);
  }

  /** `known`: the entry's lstat when its directory was listed with stats (null: it was gone by then). */
  private async describe(rel: string, path: Buffer, name: Buffer, prev: TreeEntry | undefined, known?: io.EntryStat | null): Promise<TreeEntry | undefined> {
    if (known === null) return undefined; // removed between readdir and lstat: not part of this backup
    let st: io.EntryStat;
    try {
      st = known ?? (await this.lstat(path));
    } catch (err) {
      if (isMissing(err)) return undefined;
      throw err;
    }
    const type = entryType(st);
    if (!type) {
      this.warn(childRel(rel, name), `${showPath(relText(rel, name))} has an unknown file type; skipped`);
      return undefined;
    }
    if (type === 'file') {
      const reuse = this.reusable(prev, st);
      const linked = st.nlink > 1n;
      const inode = linked ? `${st.dev}:${st.ino}` : ''; // (dev, ino) key, only needed for hard links
      let entry: TreeEntry;
      if (reuse) {
        entry = reusedEntry(name, prev, st);
      } else {
        let read = linked ? this.linkReads.get(inode) : undefined;
        if (!read) {
          this.warnings.delete(childRel(rel, name)); // read again now: an earlier read's warning no longer applies
          // Large files go through their own, narrower gate: each open stream holds chunker and
          // pack buffers in the repository, so eight at once would multiply the peak memory.
          const gate = st.size > BigInt(SMALL_FILE) ? this.largeReads : this.reads;
          read = gate(() => this.readFile(rel, name, path, st));
          if (linked) this.linkReads.set(inode, read);
        }
        const r = await read;
        entry = entryFromStat(name, type, r.st);
        entry.content = r.content;
        if (r.unstable) entry.flags |= FLAG_UNSTABLE;
        if (r.st.blocks * 512n < r.st.size) entry.flags |= FLAG_SPARSE;
        entry.xattrs = r.xattrs === null ? this.xattrs(path) : r.xattrs;
      }
      if (linked) {
        let group = this.linkGroups.get(inode);
        if (group === undefined) this.linkGroups.set(inode, (group = this.linkGroups.size + 1));
        entry.linkGroup = group;
      } else if (reuse && prev.encoded && sameEntry(entry, prev)) {
        // As the parent recorded it, field for field: its tree bytes are copied, not encoded again
        // (1 % of a mount changed still meant re-encoding every entry of each touched folder).
        entry.encoded = prev.encoded;
      }
      return entry;
    }
    const entry = entryFromStat(name, type, st);
    switch (type) {
      case 'dir':
        entry.subtree = PENDING_ID;
        entry.xattrs = this.xattrs(path);
        break;
      case 'symlink':
        entry.target = await fsp.readlink(path, { encoding: 'buffer' });
        break;
      case 'chardev':
      case 'blockdev':
        entry.rdev = st.rdev;
        break;
      default:
        // FIFOs and sockets: recorded, never opened (a FIFO would block the reader).
        entry.xattrs = this.xattrs(path);
    }
    return entry;
  }

  private xattrs(path: Buffer): Array<[Buffer, Buffer]> | undefined {
    try {
      const list = nativeFs().userXattrs(path);
      return list.length > 0 ? list : undefined;
    } catch (err) {
      if (isMissing(err)) return undefined;
      throw err;
    }
  }

  /**
   * Reads a file into the repository; re-reads once if it changed meanwhile, then records it as
   * unstable. "Changed" compares the stat before (the walk's lstat) with fstat after reading: four
   * calls per small file (open, read, fstat, close), which is what a warm-cache walk is made of.
   */
  private async readFile(rel: string, name: Buffer, path: Buffer, walkSt: io.EntryStat): Promise<ReadResult> {
    let before: io.EntryStat = walkSt;
    let last: ReadResult | undefined;
    for (let attempt = 0; attempt < 2; attempt++) {
      const size = Number(before.size);
      const now = this.onThread.enabled && size <= THREAD_READ_BYTES;
      // O_NONBLOCK: if a FIFO replaced the file since lstat, neither open() nor read() waits for a writer.
      const flags = FS.O_RDONLY | FS.O_NOFOLLOW | FS.O_NONBLOCK;
      const fd = now ? this.onThread.run(() => openSync(path, flags)) : await io.open(path, flags);
      try {
        let content: StreamRef;
        try {
          content = await this.readContents(fd, size, rel, name, now);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err;
          content = { size: 0, chunks: [] };
        }
        const after = now ? this.onThread.run(() => fstatSync(fd, { bigint: true })) : await io.fstat(fd);
        if (!after.isFile()) {
          // Replaced by something else after the walk: record what the walk saw, without contents.
          this.warn(childRel(rel, name), `${showPath(relText(rel, name))} was replaced by a non-file while read; recorded without contents`);
          return { content: { size: 0, chunks: [] }, st: walkSt, unstable: true, xattrs: null };
        }
        const stable =
          after.ino === before.ino &&
          after.size === before.size &&
          after.mtimeNs === before.mtimeNs &&
          after.ctimeNs === before.ctimeNs &&
          content.size === size;
        // By descriptor: no path to resolve again (llistxattr by path was 4% of a first backup's main thread).
        const list = nativeFs().fdUserXattrs(fd);
        last = { content, st: after, unstable: !stable, xattrs: list.length > 0 ? list : undefined };
        if (stable) return last;
        before = after;
      } finally {
        if (now) this.onThread.run(() => closeSync(fd));
        else await io.close(fd);
      }
    }
    this.warn(childRel(rel, name), `${showPath(relText(rel, name))} kept changing while it was read; its backed-up contents may be inconsistent`);
    return last!;
  }

  /** `now`: read on this thread (a small file, see THREAD_READ_BYTES). */
  private async readContents(fd: number, size: number, rel: string, name: Buffer, now: boolean): Promise<StreamRef> {
    if (size <= SMALL_FILE) {
      // One byte more than expected reveals a file that grew; one read() usually returns it all.
      const buf = Buffer.allocUnsafe(size + 1);
      let got = 0;
      while (got < size) {
        const bytesRead = now ? this.onThread.run(() => readSync(fd, buf, got, buf.length - got, got)) : await io.readAt(fd, buf, got, buf.length - got, got);
        if (bytesRead === 0) break;
        got += bytesRead;
      }
      this.counted(got);
      return this.ctx.repo.storeBuffer(buf.subarray(0, got));
    }
    const writer = this.ctx.repo.writeStream({ label: `file ${showPath(relText(rel, name))}` });
    const self = this;
    await pipeline(async function* () {
      let pos = 0;
      for (;;) {
        const block = Buffer.allocUnsafe(READ_BLOCK);
        const bytesRead = await io.readAt(fd, block, 0, READ_BLOCK, pos);
        if (bytesRead === 0) return;
        pos += bytesRead;
        self.counted(bytesRead);
        yield bytesRead === READ_BLOCK ? block : block.subarray(0, bytesRead);
      }
    }, writer);
    return writer.done();
  }

  private counted(bytes: number): void {
    this.bytesRead += bytes;
    const now = Date.now();
    if (now - this.lastProgress > 500) {
      this.lastProgress = now;
      this.ctx.progress({ bytes: this.bytesRead });
    }
  }

  private warn(path: string, message: string): void {
    if (this.warnings.has(path) || this.warnings.size < MAX_WARNINGS) this.warnings.set(path, message);
    else this.droppedWarnings++;
    this.ctx.log.warn(`files: ${message}`);
  }

  async close(): Promise<void> {
    this.closeWatchers();
    this.prepared.clear();
    this.linkReads.clear();
  }
}

/**
 * True when `e` encodes exactly as `prev` did, except a directory's subtree (checked once built). A
 * reused file keeps the parent's content object. Hard-linked entries never match: link group
 * numbers are assigned per backup.
 */
function sameEntry(e: TreeEntry, prev: TreeEntry | undefined): boolean {
  if (
    !prev ||
    e.type !== prev.type ||
    e.mode !== prev.mode ||
    e.uid !== prev.uid ||
    e.gid !== prev.gid ||
    e.mtimeNs !== prev.mtimeNs ||
    e.ctimeNs !== prev.ctimeNs ||
    e.ino !== prev.ino ||
    (e.flags & ~FLAG_XATTRS) !== (prev.flags & ~FLAG_XATTRS) ||
    e.linkGroup !== undefined ||
    prev.linkGroup || // a decoded entry says 0 for "not hard-linked", a walked one leaves it unset
    !sameXattrs(e.xattrs, prev.xattrs)
  ) {
    return false;
  }
  switch (e.type) {
    case 'file':
      return e.content === prev.content;
    case 'symlink':
      return prev.target !== undefined && e.target !== undefined && e.target.equals(prev.target);
    case 'chardev':
    case 'blockdev':
      return e.rdev === prev.rdev;
    default:
      return true;
  }
}

function sameXattrs(a: Array<[Buffer, Buffer]> | undefined, b: Array<[Buffer, Buffer]> | undefined): boolean {
  const n = a?.length ?? 0;
  if (n !== (b?.length ?? 0)) return false;
  for (let i = 0; i < n; i++) if (!a![i]![0].equals(b![i]![0]) || !a![i]![1].equals(b![i]![1])) return false;
  return true;
}

function byName(entries: TreeEntry[]): Map<string, TreeEntry> {
  return new Map(entries.map((e) => [nameKey(e.name), e]));
}

/** Relative path of a child as a map key (latin1: one char per byte, so raw names round-trip). */
function childRel(rel: string, name: Buffer): string {
  const n = name.toString('latin1');
  return rel ? `${rel}/${n}` : n;
}

/** Relative path of a child as UTF-8 text, for exclude patterns and messages. */
function relText(rel: string, name: Buffer): string {
  return Buffer.from(childRel(rel, name), 'latin1').toString('utf8');
}
