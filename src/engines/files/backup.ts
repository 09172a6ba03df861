// Backup of one mount. prepare() reads and stores every file while traffic flows (reusing the parent
// backup's chunk lists for unchanged files) and keeps each directory's entries as an encoded tree in
// memory; pin() is a stat-only walk that marks the directories whose entries changed since then;
// stream() rescans only those (re-reading only changed files) and writes the tree objects bottom-up.
import { constants as FS, promises as fsp, type BigIntStats } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { BunkerError } from '../../core/errors.js';
import type { BackupContext, BackupSession } from '../engine.js';
import type { BlobId, RepoReader, ServiceArtifact, StreamRef } from '../../repo/types.js';
import { decodeTree, encodeTree, FLAG_SPARSE, FLAG_UNSTABLE, type EntryType, type TreeEntry } from '../../repo/tree.js';
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

export function entryType(st: BigIntStats): EntryType | undefined {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'dir';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isFIFO()) return 'fifo';
  if (st.isSocket()) return 'socket';
  if (st.isCharacterDevice()) return 'chardev';
  if (st.isBlockDevice()) return 'blockdev';
  return undefined;
}

function entryFromStat(name: Buffer, type: EntryType, st: BigIntStats): TreeEntry {
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

/** True when the stat shows the entry as it was recorded (same inode, times, size, owner and mode). */
function unchanged(prev: TreeEntry, st: BigIntStats, type: EntryType): boolean {
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

function isMissing(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException)?.code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

interface ReadResult {
  content: StreamRef;
  st: BigIntStats;
  unstable: boolean;
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
  private readonly reader: RepoReader | undefined;
  /** Encoded entries of every directory seen by prepare(), keyed by relative path (latin1). */
  private prepared = new Map<string, Buffer>();
  private dirty = new Set<string>();
  private pinned = false;
  /** Hard links: (dev, ino) → the link group number shared by every name of that inode. */
  private linkGroups = new Map<string, number>();
  /** Hard links read in the current pass: (dev, ino) → the read in flight, so an inode is read once. */
  private linkReads = new Map<string, Promise<ReadResult>>();
  private readonly reads = limiter(FILE_READS);
  private readonly largeReads = limiter(LARGE_FILE_READS);
  private warnings: string[] = [];
  private warningCount = 0;
  private bytesRead = 0;
  private lastProgress = 0;

  constructor(
    private readonly root: string,
    excludes: readonly string[],
    private readonly ctx: BackupContext,
  ) {
    this.rootBuf = Buffer.from(root);
    this.excluded = compileExcludes(excludes);
    this.hasExcludes = excludes.length > 0;
    // The contract hands engines a RepoWriter; the repository object behind it also reads, which is
    // what incremental backups need to load the parent's trees.
    const repo = ctx.repo as unknown as Partial<RepoReader>;
    this.reader = typeof repo.getTree === 'function' ? (ctx.repo as unknown as RepoReader) : undefined;
  }

  async prepare(): Promise<void> {
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
    if (parent && parent.engine === 'files' && parent.format === FILES_FORMAT && parent.trees.root) {
      if (this.reader) parentRoot = parent.trees.root;
      else this.ctx.log.debug('files: the repository handle cannot read trees; reading every file');
    }
    await this.prepareDir('', this.rootBuf, parentRoot);
  }

  private async prepareDir(rel: string, abs: Buffer, prevTree: BlobId | undefined): Promise<void> {
    // The parent's tree is fetched while the directory is listed.
    const prevLoad = prevTree
      ? this.reader!.getTree(prevTree).then(
          (blob) => byName(decodeTree(blob)),
          (err: unknown) => {
            this.ctx.log.warn(`files: parent tree of ${showPath(Buffer.from(rel || '.', 'latin1'))} unreadable, reading its files again: ${(err as Error).message}`);
            return undefined;
          },
        )
      : undefined;
    const [entries, prev] = await Promise.all([this.scanDir(rel, abs, prevLoad), prevLoad]);
    this.prepared.set(rel, encodeTree(entries));
    const dirs = entries.filter((e) => e.type === 'dir');
    await mapLimit(dirs, DIR_FANOUT, (e) => {
      const p = prev?.get(nameKey(e.name));
      return this.prepareDir(childRel(rel, e.name), joinPath(abs, e.name), p?.type === 'dir' ? p.subtree : undefined);
    });
  }

  /**
   * Stat-only walk: marks directories whose entries differ from what prepare() recorded. Stats run
   * in parallel on the thread pool: on this kind of machine that beats a synchronous loop severalfold.
   */
  async pin(): Promise<void> {
    this.dirty.clear();
    await this.pinDir('', this.rootBuf);
    this.pinned = true;
  }

  private async pinDir(rel: string, abs: Buffer): Promise<void> {
    const cached = this.prepared.get(rel);
    if (!cached) {
      this.dirty.add(rel); // new since prepare(): stream() scans it whole
      return;
    }
    const prev = byName(decodeTree(cached));
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
        st = await fsp.lstat(joinPath(abs, name), { bigint: true });
      } catch (err) {
        if (!isMissing(err)) throw err;
        isDirty = true;
        return;
      }
      const type = entryType(st);
      if (!p || !type || !unchanged(p, st, type)) isDirty = true;
      if (type === 'dir') subdirs.push(name);
    });
    if (isDirty) this.dirty.add(rel);
    await mapLimit(subdirs, DIR_FANOUT, (name) => this.pinDir(childRel(rel, name), joinPath(abs, name)));
  }

  async stream(): Promise<ServiceArtifact> {
    if (!this.pinned) await this.pin();
    this.linkReads.clear(); // contents read after the pin, not the pre-pass's
    const rootSt = await fsp.lstat(this.root, { bigint: true });
    const totals = { files: 0, dirs: 0, size: 0 };
    const rootId = await this.buildDir('', this.rootBuf, totals);
    const root: RootMeta = {
      mode: Number(rootSt.mode & 0o7777n),
      uid: Number(rootSt.uid),
      gid: Number(rootSt.gid),
      mtimeNs: rootSt.mtimeNs.toString(),
      xattrs: nativeFs().userXattrs(this.rootBuf).map(([n, v]) => [n.toString('base64'), v.toString('base64')]),
    };
    if (this.warningCount > MAX_WARNINGS) this.warnings.push(`... and ${this.warningCount - MAX_WARNINGS} more warnings`);
    return {
      engine: 'files',
      format: FILES_FORMAT,
      streams: {},
      trees: { root: rootId },
      meta: { root, files: totals.files, dirs: totals.dirs },
      size: totals.size,
      warnings: this.warnings,
    };
  }

  /** Writes the tree of one directory (after its subdirectories) and returns its id. */
  private async buildDir(rel: string, abs: Buffer, totals: { files: number; dirs: number; size: number }): Promise<BlobId> {
    const cached = this.prepared.get(rel);
    this.prepared.delete(rel); // built once; frees the pre-pass's copy as the walk goes
    const clean = cached !== undefined && !this.dirty.has(rel);
    const entries = clean ? decodeTree(cached) : await this.scanDir(rel, abs, cached ? byName(decodeTree(cached)) : undefined);
    totals.dirs++;
    let subdirs = 0;
    for (const e of entries) {
      if (e.type === 'dir') subdirs++;
      if (e.type !== 'file') continue;
      totals.files++;
      totals.size += e.content?.size ?? 0;
    }
    // A clean directory without subdirectories is already encoded exactly as it will be stored.
    if (clean && subdirs === 0) return this.ctx.repo.putTree(cached);
    await mapLimit(
      entries.filter((e) => e.type === 'dir'),
      DIR_FANOUT,
      async (e) => {
        e.subtree = await this.buildDir(childRel(rel, e.name), joinPath(abs, e.name), totals);
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
    let names: Buffer[];
    let prev: Map<string, TreeEntry> | undefined;
    try {
      [names, prev] = await Promise.all([fsp.readdir(abs, { encoding: 'buffer' }), prevLoad]);
    } catch (err) {
      if (isMissing(err)) {
        this.warn(`directory ${showPath(Buffer.from(rel, 'latin1'))} disappeared during the backup`);
        return [];
      }
      throw new BunkerError('engine', `cannot list ${showPath(abs)}: ${(err as Error).message}`, { cause: err });
    }
    const results = await mapLimit(names, ENTRY_FANOUT, async (name) => {
      if (this.hasExcludes && this.excluded(relText(rel, name))) return undefined;
      return this.describe(rel, joinPath(abs, name), name, prev?.get(nameKey(name)));
    });
    return results.filter((e): e is TreeEntry => e !== undefined);
  }

  private async describe(rel: string, path: Buffer, name: Buffer, prev: TreeEntry | undefined): Promise<TreeEntry | undefined> {
    let st: BigIntStats;
    try {
      st = await fsp.lstat(path, { bigint: true });
    } catch (err) {
      if (isMissing(err)) return undefined; // removed between readdir and lstat: not part of this backup
      throw err;
    }
    const type = entryType(st);
    if (!type) {
      this.warn(`${showPath(relText(rel, name))} has an unknown file type; skipped`);
      return undefined;
    }
    if (type === 'file') {
      // An entry recorded as unstable is read again even when its stat now matches.
      const reuse =
        prev && !(prev.flags & FLAG_UNSTABLE) && unchanged(prev, st, type) && prev.content!.chunks.every((c) => this.ctx.repo.hasBlob(c));
      const linked = st.nlink > 1n;
      const inode = `${st.dev}:${st.ino}`;
      let entry: TreeEntry;
      if (reuse) {
        entry = { ...entryFromStat(name, type, st), content: prev.content, xattrs: prev.xattrs, flags: prev.flags };
      } else {
        let read = linked ? this.linkReads.get(inode) : undefined;
        if (!read) {
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
        entry.xattrs = this.xattrs(path);
      }
      if (linked) {
        let group = this.linkGroups.get(inode);
        if (group === undefined) this.linkGroups.set(inode, (group = this.linkGroups.size + 1));
        entry.linkGroup = group;
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
  private async readFile(rel: string, name: Buffer, path: Buffer, walkSt: BigIntStats): Promise<ReadResult> {
    let before = walkSt;
    let last: ReadResult | undefined;
    for (let attempt = 0; attempt < 2; attempt++) {
      // O_NONBLOCK: if a FIFO replaced the file since lstat, neither open() nor read() waits for a writer.
      const fh = await fsp.open(path, FS.O_RDONLY | FS.O_NOFOLLOW | FS.O_NONBLOCK);
      try {
        const size = Number(before.size);
        let content: StreamRef;
        try {
          content = await this.readContents(fh, size, rel, name);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err;
          content = { size: 0, chunks: [] };
        }
        const after = await fh.stat({ bigint: true });
        if (!after.isFile()) {
          // Replaced by something else after the walk: record what the walk saw, without contents.
          this.warn(`${showPath(relText(rel, name))} was replaced by a non-file while read; recorded without contents`);
          return { content: { size: 0, chunks: [] }, st: walkSt, unstable: true };
        }
        const stable =
          after.ino === before.ino &&
          after.size === before.size &&
          after.mtimeNs === before.mtimeNs &&
          after.ctimeNs === before.ctimeNs &&
          content.size === size;
        last = { content, st: after, unstable: !stable };
        if (stable) return last;
        before = after;
      } finally {
        await fh.close();
      }
    }
    this.warn(`${showPath(relText(rel, name))} kept changing while it was read; its backed-up contents may be inconsistent`);
    return last!;
  }

  private async readContents(fh: fsp.FileHandle, size: number, rel: string, name: Buffer): Promise<StreamRef> {
    if (size <= SMALL_FILE) {
      // One byte more than expected reveals a file that grew; one read() usually returns it all.
      const buf = Buffer.allocUnsafe(size + 1);
      let got = 0;
      while (got < size) {
        const { bytesRead } = await fh.read(buf, got, buf.length - got, got);
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
        const { bytesRead } = await fh.read(block, 0, READ_BLOCK, pos);
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

  private warn(message: string): void {
    this.warningCount++;
    if (this.warnings.length < MAX_WARNINGS) this.warnings.push(message);
    this.ctx.log.warn(`files: ${message}`);
  }

  async close(): Promise<void> {
    this.prepared.clear();
    this.linkReads.clear();
  }
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
