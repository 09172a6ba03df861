// Restore of one mount. Default: stage() writes the whole snapshot into a staging directory beside
// the mount (same file system), commit() swaps it in with one renameat2(RENAME_EXCHANGE), so the
// mount is wholly old or wholly new whenever the process dies; the old tree is then deleted. Staging
// directories left by a killed restore are removed by the next restore of that mount. A subset
// restore stages each requested path and swaps each in the same way. In-place mode (mounts too big to
// stage twice) rewrites only changed entries, each through a temp name + rename.
import { closeSync, constants as FS, openSync, promises as fsp, type BigIntStats } from 'node:fs';
import { basename, dirname } from 'node:path';
import { BunkerError } from '../../core/errors.js';
import { newId } from '../../core/ids.js';
import type { RestoreContext, RestoreSession } from '../engine.js';
import type { BlobId, ServiceArtifact } from '../../repo/types.js';
import { decodeTree, FLAG_SPARSE, type TreeEntry } from '../../repo/tree.js';
import { entryType, FILES_FORMAT, type RootMeta } from './backup.js';
import * as io from './fsio.js';
import { nativeFs } from './native.js';
import { checkEntryName, joinPath, limiter, mapLimit, nameKey, showPath, splitRelative } from './paths.js';

const SMALL_FILE = 1 << 20;
/** Files up to this size are created, written and closed on the main thread while that is cheap (io.ThreadCalls). */
const THREAD_WRITE_BYTES = 64 << 10;
/** Small files of one directory are fetched together, in batches of at most this many bytes and files. */
const BATCH_BYTES = 1 << 20;
const BATCH_FILES = 256;
const BLOCK = 4096;
const ZERO_BLOCK = Buffer.alloc(BLOCK);
const NUL = Buffer.alloc(1);
/**
 * readStream() buffers at most one blob for us: a Readable iterated with more than one chunk buffered
 * joins them into a new buffer on every read (a copy, and external memory that brings on full GCs).
 * The repository reads and decrypts ahead on its own.
 */
const ONE_BLOB = { highWaterMark: 1 };
const ENTRY_FANOUT = 8;
const FILE_WRITES = 16;
const STAGE_MARK = '.bunker-stage-';
const TMP_PREFIX = '.bunker-tmp-';

const S_IFIFO = 0o010000;
const S_IFCHR = 0o020000;
const S_IFBLK = 0o060000;

function code(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException)?.code;
}

async function lstatOrNull(path: Buffer | string): Promise<BigIntStats | null> {
  try {
    return await fsp.lstat(path, { bigint: true });
  } catch (err) {
    if (code(err) === 'ENOENT') return null;
    throw err;
  }
}

function unsafe(message: string, path: string): BunkerError {
  return new BunkerError('unsafe_path', message, {
    details: { path },
    hint: 'Nothing was written outside the mount. Choose a path that stays inside the mount and does not pass through a symlink.',
  });
}

/** The prefix of staging directories beside a mount: ".<mount name>.bunker-stage-". */
function stagePrefix(target: string): string {
  return `.${basename(target)}${STAGE_MARK}`;
}

/**
 * Removes staging directories beside the mount left by restores that were killed. Those hold either a
 * half-written new tree (killed during stage) or the old tree (killed after the swap): the mount itself
 * is complete in both cases. Directories of live processes are left alone.
 */
export async function removeStaleStaging(target: string): Promise<number> {
  const parent = dirname(target);
  const prefix = stagePrefix(target);
  let names: string[];
  try {
    names = await fsp.readdir(parent);
  } catch {
    return 0;
  }
  let removed = 0;
  for (const name of names) {
    if (!name.startsWith(prefix)) continue;
    const pid = Number(name.slice(prefix.length).split('-')[0]);
    if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && processAlive(pid)) continue;
    if (pid === process.pid) continue;
    await fsp.rm(`${parent}/${name}`, { recursive: true, force: true });
    removed++;
  }
  return removed;
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return code(err) === 'EPERM';
  }
}

interface Staged {
  /** Components of the path inside the mount ([] = the whole mount). */
  parts: Buffer[];
  /** Directories on the way, from the snapshot, to create when missing. */
  parents: TreeEntry[];
  staged: Buffer;
}

export class FilesRestoreSession implements RestoreSession {
  private readonly target: Buffer;
  private readonly native = nativeFs();
  private readonly asRoot = process.getuid?.() === 0;
  private readonly euid = process.geteuid?.() ?? -1;
  private readonly egid = process.getegid?.() ?? -1;
  private readonly umask = process.umask();
  /** Staged restores create files in directories made by this restore (mode 0700 until finished). */
  private freshParents = true;
  private readonly writes = limiter(FILE_WRITES);
  /** The static lets tests force the thread pool. */
  static callsOnThread = true;
  private readonly onThread = new io.ThreadCalls(FilesRestoreSession.callsOnThread);
  private stageDir: string | undefined;
  private staged: Staged[] = [];
  /** Hard links: link group → the first restored name of that inode (and its inode number). */
  private links = new Map<number, Promise<{ path: Buffer; ino: bigint }>>();
  private written = 0;
  private lastProgress = 0;

  constructor(
    private readonly mount: string,
    private readonly artifact: ServiceArtifact,
    private readonly ctx: RestoreContext,
  ) {
    this.target = Buffer.from(mount);
    if (artifact.engine !== 'files' || artifact.format > FILES_FORMAT || !artifact.trees.root) {
      throw new BunkerError('not_restorable', `this backup of the mount was written by engine "${artifact.engine}" format ${artifact.format}, which this Bunker cannot restore`, {
        hint: 'Restore it with the Bunker version that wrote it, or pick another backup.',
      });
    }
  }

  private get rootTree(): BlobId {
    return this.artifact.trees.root!;
  }

  async stage(): Promise<void> {
    await removeStaleStaging(this.mount);
    const paths = this.ctx.options.paths ?? [];
    const subsets = await Promise.all(paths.map((p) => this.resolve(p)));
    if (this.ctx.options.inPlace) {
      this.freshParents = false;
      await this.validate(this.rootTree, '');
      await this.restoreInPlace(subsets);
      return;
    }
    const mountSt = await lstatOrNull(this.target);
    if (mountSt && !mountSt.isDirectory()) {
      throw new BunkerError('target_mismatch', `mount path ${showPath(this.mount)} exists and is not a directory`, {
        hint: 'Move it away or point the mount at a directory.',
      });
    }
    const parentSt = await fsp.lstat(dirname(this.mount), { bigint: true }).catch((err) => {
      throw new BunkerError('target_mismatch', `the folder holding mount ${showPath(this.mount)} does not exist`, { cause: err, hint: 'Create it first.' });
    });
    if (mountSt && mountSt.dev !== parentSt.dev) {
      throw new BunkerError('engine', `mount ${showPath(this.mount)} is a file-system mount point, so a staged copy cannot be swapped in by rename`, {
        hint: 'Restore it in place (in-place mode writes only changed files, each via temp file + rename).',
      });
    }
    this.stageDir = `${dirname(this.mount)}/${stagePrefix(this.mount)}${process.pid}-${newId()}`;
    await fsp.mkdir(this.stageDir, { mode: 0o700 });
    const stage = Buffer.from(this.stageDir);
    if (subsets.length === 0) {
      await this.restoreDir(this.rootTree, stage, '');
      await this.applyRootMeta(stage);
      this.staged = [{ parts: [], parents: [], staged: stage }];
      return;
    }
    let i = 0;
    for (const s of subsets) {
      const staged = joinPath(stage, Buffer.from(String(i++)));
      await this.restoreEntry(s.entry, staged, s.parts.map((p) => p.toString()).join('/'));
      this.staged.push({ parts: s.parts, parents: s.parents, staged });
    }
  }

  async commit(): Promise<void> {
    if (this.ctx.options.inPlace || !this.stageDir) return;
    for (const s of this.staged) {
      const dest = s.parts.length === 0 ? this.target : await this.ensureParents(s);
      if (await lstatOrNull(dest)) {
        // One atomic step: the mount (or path) is the old tree before it and the new tree after it.
        this.native.exchange(s.staged, dest);
      } else {
        await fsp.rename(s.staged, dest);
      }
    }
    await fsyncDir(dirname(this.mount));
    const old = this.stageDir;
    this.stageDir = undefined;
    await fsp.rm(old, { recursive: true, force: true });
  }

  async abort(): Promise<void> {
    if (!this.stageDir) return;
    const dir = this.stageDir;
    this.stageDir = undefined;
    await fsp.rm(dir, { recursive: true, force: true });
  }

  /** Finds a subset path in the snapshot, refusing paths that leave the mount or pass through a symlink. */
  private async resolve(path: string): Promise<{ parts: Buffer[]; parents: TreeEntry[]; entry: TreeEntry }> {
    const parts = splitRelative(path);
    const parents: TreeEntry[] = [];
    let tree = this.rootTree;
    for (let i = 0; i < parts.length; i++) {
      const entries = await this.readTree(tree, parts.slice(0, i).join('/'));
      const entry = entries.find((e) => e.name.equals(parts[i]!));
      if (!entry) {
        throw new BunkerError('not_found', `"${path}" is not in this backup of the mount`, {
          hint: 'List the backup\'s files and give a path relative to the mount.',
        });
      }
      if (i === parts.length - 1) return { parts, parents, entry };
      if (entry.type === 'symlink') throw unsafe(`refusing restore path "${path}": "${parts.slice(0, i + 1).join('/')}" is a symlink in the backup`, path);
      if (entry.type !== 'dir') throw new BunkerError('not_found', `"${path}" is not in this backup of the mount ("${parts.slice(0, i + 1).join('/')}" is not a directory)`);
      parents.push(entry);
      tree = entry.subtree!;
    }
    throw new BunkerError('internal', 'unreachable');
  }

  /** Reads a tree and refuses entries that could leave their directory (bad names, duplicates). */
  private async readTree(id: BlobId, where: string): Promise<TreeEntry[]> {
    const entries = decodeTree(await this.ctx.repo.getTree(id));
    for (let i = 0; i < entries.length; i++) {
      const name = entries[i]!.name;
      checkEntryName(name, where);
      // Names are stored sorted and unique; a repeated name (a symlink and a directory both called
      // "a") is how a crafted snapshot would try to write through a link it just created.
      if (i > 0 && Buffer.compare(entries[i - 1]!.name, name) >= 0) {
        const shown = `${where ? where + '/' : ''}${showPath(name).slice(1, -1)}`;
        throw unsafe(`refusing snapshot: entry "${shown}" appears twice or out of order in its directory`, shown);
      }
    }
    return entries;
  }

  private async validate(id: BlobId, where: string): Promise<void> {
    const entries = await this.readTree(id, where);
    await mapLimit(
      entries.filter((e) => e.type === 'dir'),
      ENTRY_FANOUT,
      (e) => this.validate(e.subtree!, `${where ? where + '/' : ''}${showPath(e.name).slice(1, -1)}`),
    );
  }

  /** Restores a directory's entries into `dir`, which exists and is empty (staging). */
  private async restoreDir(id: BlobId, dir: Buffer, where: string): Promise<void> {
    if (this.ctx.signal.aborted) throw new BunkerError('aborted', 'the restore was cancelled');
    const entries = await this.readTree(id, where);
    const batches = new BatchReader(entries, this.ctx.repo);
    const others = entries.filter((e) => !batches.has(e));
    // Both settle before an error is passed on, so nothing is still writing when abort() removes the stage.
    const [small, rest] = await Promise.allSettled([
      this.writeBatches(batches, dir),
      mapLimit(others, ENTRY_FANOUT, (e) => this.restoreEntry(e, joinPath(dir, e.name), childWhere(where, e.name))),
    ]);
    if (small.status === 'rejected') throw small.reason;
    if (rest.status === 'rejected') throw rest.reason;
  }

  /**
   * Writes a directory's batched small files: each batch is created, written, chowned, chmodded and
   * timestamped by one native call on the thread pool, while the next batch is read from the repository.
   */
  private async writeBatches(batches: BatchReader, dir: Buffer): Promise<void> {
    for (let b = 0; b < batches.count; b++) {
      if (this.ctx.signal.aborted) throw new BunkerError('aborted', 'the restore was cancelled');
      const { files, parts, size } = await batches.take(b);
      const meta = new Uint32Array(files.length * 5);
      const mtimes = new BigInt64Array(files.length);
      const names: Buffer[] = [];
      for (let i = 0; i < files.length; i++) {
        const e = files[i]!;
        const { chown, chmod } = this.metaCalls(e);
        meta[i * 5] = e.content?.size ?? 0;
        meta[i * 5 + 1] = e.mode;
        meta[i * 5 + 2] = (chmod ? 1 : 0) | (chown ? 2 : 0);
        meta[i * 5 + 3] = e.uid;
        meta[i * 5 + 4] = e.gid;
        mtimes[i] = e.mtimeNs;
        names.push(e.name, NUL);
      }
      try {
        await this.native.writeFiles(dir, Buffer.concat(names), parts, meta, mtimes);
      } catch (err) {
        throw batchError(err, dir, files);
      }
      for (const part of parts) batchBuffers.give(part);
      this.count(size);
    }
  }

  /** Whether a new file needs fchown and fchmod after it is created with mode & 0o777 (minus the umask). */
  private metaCalls(e: TreeEntry): { chown: boolean; chmod: boolean } {
    // A new file already has our uid/gid (its staging parent is 0700, never setgid) and mode & ~umask:
    // skip the calls that would not change anything, which is most files.
    const chown = this.asRoot && !(this.freshParents && e.uid === this.euid && e.gid === this.egid);
    return { chown, chmod: chown || (e.mode & ~0o777) !== 0 || (e.mode & ~this.umask) !== e.mode };
  }

  /** Creates one entry at `path` (which does not exist) and everything below it. */
  private async restoreEntry(e: TreeEntry, path: Buffer, where: string): Promise<void> {
    switch (e.type) {
      case 'dir':
        await fsp.mkdir(path, { mode: 0o700 });
        await this.restoreDir(e.subtree!, path, where);
        await this.applyMeta(path, e);
        return;
      case 'file':
        await this.restoreFile(e, path);
        return;
      case 'symlink':
        // Created as a link and never followed: nothing below it is ever written (names cannot hold "/").
        await fsp.symlink(e.target!, path);
        await this.applyMeta(path, e);
        return;
      case 'fifo':
        this.native.mknod(path, S_IFIFO | (e.mode & 0o777), 0n);
        await this.applyMeta(path, e);
        return;
      case 'chardev':
      case 'blockdev':
        try {
          this.native.mknod(path, (e.type === 'chardev' ? S_IFCHR : S_IFBLK) | (e.mode & 0o777), e.rdev ?? 0n);
        } catch (err) {
          if (code(err) !== 'EPERM') throw err;
          this.ctx.log.warn(`files: device ${where} not restored: creating device nodes is not permitted here`);
          return;
        }
        await this.applyMeta(path, e);
        return;
      case 'socket':
        this.ctx.log.warn(`files: socket ${where} not restored: the program that owns it creates it when it starts`);
        return;
    }
  }

  private async restoreFile(e: TreeEntry, path: Buffer): Promise<void> {
    if (e.linkGroup) {
      const first = this.links.get(e.linkGroup);
      if (first) {
        await fsp.link((await first).path, path);
        return;
      }
      const write = this.writeFile(e, path).then(async () => ({ path, ino: (await fsp.lstat(path, { bigint: true })).ino }));
      this.links.set(e.linkGroup, write);
      await write;
      return;
    }
    await this.writeFile(e, path);
  }

  /**
   * Writes a file's contents and metadata at a path that must not exist yet (O_EXCL, never following
   * links). Small files of a directory being created go through writeBatches() instead.
   */
  private async writeFile(e: TreeEntry, path: Buffer): Promise<void> {
    await this.writes(async () => {
      const content = e.content ?? { size: 0, chunks: [] };
      const sparse = (e.flags & FLAG_SPARSE) !== 0;
      // Small files are fetched before the file is created: no descriptor is held while the repository reads.
      const whole = content.size > 0 && content.size <= SMALL_FILE ? await this.ctx.repo.readBuffer(content) : undefined;
      const now = whole !== undefined && !sparse && whole.length <= THREAD_WRITE_BYTES && (await this.onThread.ready());
      // Large files bypass the page cache: copying a restore's bytes into fresh page-cache pages was a
      // quarter of its CPU on this VM, and a restore's files are not read back soon.
      const direct = !sparse && content.size > SMALL_FILE;
      const flags = FS.O_WRONLY | FS.O_CREAT | FS.O_EXCL | FS.O_NOFOLLOW;
      const fd = now ? this.onThread.run(() => openSync(path, flags, e.mode & 0o777)) : direct ? await openDirect(path, flags, e.mode & 0o777) : await io.open(path, flags, e.mode & 0o777);
      try {
        let pos = 0;
        /** O_DIRECT: the bytes after the last whole block written, passed again with the next chunk. */
        let pending: Buffer | undefined;
        const put = async (chunk: Buffer) => {
          if (sparse) await writeSparse(fd, chunk, pos);
          else if (direct) pending = await this.writeDirect(fd, pending, chunk, pos - (pending?.length ?? 0));
          else if (now) this.onThread.run(() => io.writeAllAtSync(fd, chunk, 0, chunk.length, pos));
          else await io.writeAllAt(fd, chunk, 0, chunk.length, pos);
          pos += chunk.length;
          this.count(chunk.length);
        };
        if (whole) await put(whole);
        else if (content.size > SMALL_FILE) for await (const chunk of this.ctx.repo.readStream(content, ONE_BLOB)) await put(chunk as Buffer);
        if (pending) await this.native.writeAt(fd, [pending], pos - pending.length, true);
        if (pos !== content.size) {
          throw new BunkerError('corrupt', `stored contents of a file are ${pos} bytes, expected ${content.size}`, {
            hint: 'Run `bunker check --read-data` on the repository.',
          });
        }
        if (sparse) await io.ftruncate(fd, content.size); // a trailing hole leaves the size short otherwise
        const { chown, chmod } = this.metaCalls(e);
        if (chown) await io.fchown(fd, e.uid, e.gid);
        if (chmod) await io.fchmod(fd, e.mode);
      } finally {
        if (now) this.onThread.run(() => closeSync(fd));
        else await io.close(fd);
      }
      for (const [name, value] of e.xattrs ?? []) this.native.setXattr(path, name, value);
      this.native.utimens(path, e.mtimeNs, e.mtimeNs);
    });
  }

  /**
   * Writes `pending` then `chunk` at `position` through writeAt(), which writes whole blocks only;
   * returns the bytes it left (under one block, to be passed again), or undefined.
   */
  private async writeDirect(fd: number, pending: Buffer | undefined, chunk: Buffer, position: number): Promise<Buffer | undefined> {
    const length = (pending?.length ?? 0) + chunk.length;
    const rest = length - (await this.native.writeAt(fd, pending ? [pending, chunk] : [chunk], position, false));
    if (rest === 0) return undefined;
    if (rest <= chunk.length) return chunk.subarray(chunk.length - rest);
    return Buffer.concat([pending!.subarray(pending!.length - (rest - chunk.length)), chunk]);
  }

  /** Owner, mode, user xattrs, then times (last, since the others change ctime and writes change mtime). */
  private async applyMeta(path: Buffer, e: Pick<TreeEntry, 'type' | 'mode' | 'uid' | 'gid' | 'mtimeNs' | 'xattrs'>): Promise<void> {
    if (this.asRoot) await fsp.lchown(path, e.uid, e.gid);
    if (e.type !== 'symlink') {
      await fsp.chmod(path, e.mode); // after chown, which clears setuid/setgid
      for (const [name, value] of e.xattrs ?? []) this.native.setXattr(path, name, value);
    }
    this.native.utimens(path, e.mtimeNs, e.mtimeNs);
  }

  private async applyRootMeta(path: Buffer): Promise<void> {
    const root = this.artifact.meta.root as RootMeta | undefined;
    if (!root) return;
    await this.applyMeta(path, {
      type: 'dir',
      mode: root.mode,
      uid: root.uid,
      gid: root.gid,
      mtimeNs: BigInt(root.mtimeNs),
      xattrs: root.xattrs.map(([n, v]) => [Buffer.from(n, 'base64'), Buffer.from(v, 'base64')]),
    });
  }

  /** Creates missing directories on the way to a subset path, refusing any that is not a real directory. */
  private async ensureParents(s: Staged): Promise<Buffer> {
    let path = this.target;
    const mountSt = await lstatOrNull(path);
    if (!mountSt) {
      await fsp.mkdir(path, { mode: 0o700 });
      await this.applyRootMeta(path);
    } else if (!mountSt.isDirectory()) {
      throw new BunkerError('target_mismatch', `mount path ${showPath(this.mount)} exists and is not a directory`, { hint: 'Move it away first.' });
    }
    for (let i = 0; i < s.parts.length - 1; i++) {
      path = joinPath(path, s.parts[i]!);
      const st = await lstatOrNull(path);
      if (!st) {
        await fsp.mkdir(path, { mode: 0o700 });
        await this.applyMeta(path, s.parents[i]!);
      } else if (!st.isDirectory()) {
        const shown = s.parts.slice(0, i + 1).join('/');
        throw unsafe(`refusing to restore below "${shown}": in the mount it is ${st.isSymbolicLink() ? 'a symlink' : 'not a directory'}`, shown);
      }
    }
    return joinPath(path, s.parts[s.parts.length - 1]!);
  }

  // ---- in-place mode ----

  private async restoreInPlace(subsets: Array<{ parts: Buffer[]; parents: TreeEntry[]; entry: TreeEntry }>): Promise<void> {
    const mountSt = await lstatOrNull(this.target);
    if (!mountSt) await fsp.mkdir(this.target, { mode: 0o700 });
    else if (!mountSt.isDirectory()) {
      throw new BunkerError('target_mismatch', `mount path ${showPath(this.mount)} exists and is not a directory`, { hint: 'Move it away first.' });
    }
    if (subsets.length === 0) {
      await this.syncDir(this.rootTree, this.target, '');
      await this.applyRootMeta(this.target);
      return;
    }
    for (const s of subsets) {
      const path = await this.ensureParents({ parts: s.parts, parents: s.parents, staged: this.target });
      await this.syncEntry(s.entry, path, s.parts.map((p) => p.toString()).join('/'), path.subarray(0, path.lastIndexOf(0x2f)));
    }
  }

  /** Makes an existing directory match a tree: removes extra entries, rewrites changed ones. */
  private async syncDir(id: BlobId, dir: Buffer, where: string): Promise<void> {
    if (this.ctx.signal.aborted) throw new BunkerError('aborted', 'the restore was cancelled');
    const entries = await this.readTree(id, where);
    const wanted = new Set(entries.map((e) => nameKey(e.name)));
    for (const name of await fsp.readdir(dir, { encoding: 'buffer' })) {
      if (!wanted.has(nameKey(name))) await fsp.rm(joinPath(dir, name), { recursive: true, force: true });
    }
    await mapLimit(entries, ENTRY_FANOUT, (e) => this.syncEntry(e, joinPath(dir, e.name), childWhere(where, e.name), dir));
  }

  private async syncEntry(e: TreeEntry, path: Buffer, where: string, dir: Buffer): Promise<void> {
    const st = await lstatOrNull(path);
    const type = st ? entryType(st) : undefined;
    if (e.type === 'dir') {
      if (st && type !== 'dir') await fsp.rm(path, { recursive: true, force: true });
      if (type !== 'dir') await fsp.mkdir(path, { mode: 0o700 });
      await this.syncDir(e.subtree!, path, where);
      await this.applyMeta(path, e);
      return;
    }
    if (e.type === 'file' && e.linkGroup) {
      const first = this.links.get(e.linkGroup);
      if (first) {
        const f = await first;
        if (st?.ino === f.ino) return;
        await this.replace(path, dir, (tmp) => fsp.link(f.path, tmp));
        return;
      }
    }
    let promise: Promise<{ path: Buffer; ino: bigint }> | undefined;
    const work = (async () => {
      if (st && type === e.type && sameAsEntry(st, e, await readlinkIfLink(path, type))) {
        return { path, ino: st.ino };
      }
      // Files go straight to writeFile: restoreEntry's hard-link bookkeeping is this function's here.
      await this.replace(path, dir, (tmp) => (e.type === 'file' ? this.writeFile(e, tmp) : this.restoreEntry(e, tmp, where)));
      return { path, ino: (await fsp.lstat(path, { bigint: true })).ino };
    })();
    if (e.type === 'file' && e.linkGroup) this.links.set(e.linkGroup, (promise = work));
    await (promise ?? work);
  }

  /** Creates the new entry under a temp name in the same directory, then renames it over `path`. */
  private async replace(path: Buffer, dir: Buffer, create: (tmp: Buffer) => Promise<void>): Promise<void> {
    const tmp = joinPath(dir, Buffer.from(`${TMP_PREFIX}${newId()}`));
    try {
      await create(tmp);
      const st = await lstatOrNull(path);
      if (st?.isDirectory()) await fsp.rm(path, { recursive: true, force: true }); // rename cannot replace a directory with a file
      await fsp.rename(tmp, path);
    } catch (err) {
      await fsp.rm(tmp, { force: true, recursive: true }).catch(() => {});
      throw err;
    }
  }

  private count(bytes: number): void {
    this.written += bytes;
    const now = Date.now();
    if (now - this.lastProgress > 500) {
      this.lastProgress = now;
      this.ctx.progress({ bytes: this.written });
    }
  }
}

function childWhere(where: string, name: Buffer): string {
  const shown = showPath(name).slice(1, -1);
  return where ? `${where}/${shown}` : shown;
}

async function readlinkIfLink(path: Buffer, type: string | undefined): Promise<Buffer | undefined> {
  return type === 'symlink' ? fsp.readlink(path, { encoding: 'buffer' }) : undefined;
}

/** In-place mode: an entry on disk that already matches the snapshot is left alone. */
function sameAsEntry(st: BigIntStats, e: TreeEntry, linkTarget: Buffer | undefined): boolean {
  if (st.mtimeNs !== e.mtimeNs || Number(st.uid) !== e.uid || Number(st.gid) !== e.gid) return false;
  if (e.type !== 'symlink' && Number(st.mode & 0o7777n) !== e.mode) return false;
  if (e.type === 'file') return Number(st.size) === e.content?.size;
  if (e.type === 'symlink') return !!linkTarget && linkTarget.equals(e.target!);
  if (e.type === 'chardev' || e.type === 'blockdev') return st.rdev === e.rdev;
  return true;
}

/** Writes data at `pos`, skipping whole zero blocks so they stay holes. */
async function writeSparse(fd: number, data: Buffer, pos: number): Promise<void> {
  let start = 0;
  while (start < data.length) {
    // Block boundaries are absolute file offsets, so holes line up with the file system's blocks.
    const end = Math.min(data.length, start + BLOCK - ((pos + start) % BLOCK));
    const block = data.subarray(start, end);
    if (!(block.length === BLOCK && block.equals(ZERO_BLOCK))) {
      let runEnd = end;
      // Extend over following non-zero blocks to write in larger pieces.
      while (runEnd < data.length) {
        const next = data.subarray(runEnd, Math.min(data.length, runEnd + BLOCK));
        if (next.length === BLOCK && next.equals(ZERO_BLOCK)) break;
        runEnd += next.length;
      }
      await io.writeAllAt(fd, data, start, runEnd - start, pos + start);
      start = runEnd;
    } else start = end;
  }
}

/**
 * Creates a new file (flags hold O_CREAT | O_EXCL) opened with O_DIRECT, or without it where the file
 * system refuses the flag (older tmpfs, some FUSE); some refuse only after creating the file.
 */
async function openDirect(path: Buffer, flags: number, mode: number): Promise<number> {
  try {
    return await io.open(path, flags | FS.O_DIRECT, mode);
  } catch (err) {
    if (code(err) !== 'EINVAL') throw err;
    await fsp.rm(path, { force: true });
    return io.open(path, flags, mode);
  }
}

async function fsyncDir(path: string): Promise<void> {
  const fh = await fsp.open(path, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * The small files of one directory, fetched in batches: one readStream() over a batch's chunks reads
 * each run of blobs lying back to back in a pack (small files of a directory are stored in order)
 * with one ranged read, instead of a pack read per file. take(b) returns batch b and starts reading
 * batch b + 1, so at most two batches per directory are in memory.
 */
class BatchReader {
  private readonly batches: Array<{ files: TreeEntry[]; size: number; parts?: Promise<Buffer[]> }> = [];
  private readonly members = new Set<TreeEntry>();

  constructor(
    entries: TreeEntry[],
    private readonly repo: RestoreContext['repo'],
  ) {
    let current: (typeof this.batches)[number] | undefined;
    for (const e of entries) {
      const size = e.content?.size ?? 0;
      // Left out: hard links (all names but the first are links; restoreFile keeps that bookkeeping),
      // sparse files (holes are skipped block by block), files with xattrs, and large files.
      if (e.type !== 'file' || e.linkGroup || (e.flags & FLAG_SPARSE) !== 0 || e.xattrs?.length || size > BATCH_BYTES) continue;
      if (!current || current.size + size > BATCH_BYTES || current.files.length >= BATCH_FILES) {
        this.batches.push((current = { files: [], size: 0 }));
      }
      this.members.add(e);
      current.files.push(e);
      current.size += size;
    }
  }

  get count(): number {
    return this.batches.length;
  }

  has(e: TreeEntry): boolean {
    return this.members.has(e);
  }

  /**
   * Batch b's files and their contents back to back, in the pieces the repository returned (not joined:
   * writeFiles() takes them as they are); starts reading batch b + 1. Each batch is taken once.
   */
  async take(b: number): Promise<{ files: TreeEntry[]; parts: Buffer[]; size: number }> {
    const batch = this.batches[b]!;
    const parts = this.fetch(b);
    batch.parts = undefined;
    if (b + 1 < this.batches.length) void this.fetch(b + 1).catch(() => {}); // read ahead; errors surface when taken
    return { files: batch.files, parts: await parts, size: batch.size };
  }

  private fetch(b: number): Promise<Buffer[]> {
    const batch = this.batches[b]!;
    if (batch.parts) return batch.parts;
    const { files, size } = batch;
    batch.parts = (async () => {
      if (size === 0) return [];
      // Each file's bytes follow the previous file's; readInto() checks the total against `size`.
      const out = batchBuffers.take(size);
      await this.repo.readInto({ size, chunks: files.flatMap((f) => f.content?.chunks ?? []) }, out);
      return [out];
    })();
    return batch.parts;
  }
}

/**
 * Buffers for batches, reused: a restore reads a mount's small files (hundreds of MB) through them, and
 * a fresh allocation per batch is external memory that brings on a full GC every 64 MB.
 */
class BatchBuffers {
  private readonly free: Buffer[] = [];

  take(size: number): Buffer {
    return (this.free.pop() ?? Buffer.allocUnsafeSlow(BATCH_BYTES)).subarray(0, size);
  }

  /** Hands back a buffer from take() that nothing reads or writes any more. */
  give(buf: Buffer): void {
    if (this.free.length < KEPT_BATCH_BUFFERS && buf.buffer.byteLength === BATCH_BYTES) this.free.push(Buffer.from(buf.buffer, buf.byteOffset, BATCH_BYTES));
  }
}

const KEPT_BATCH_BUFFERS = 16;
const batchBuffers = new BatchBuffers();

/** The error of a failed writeFiles() batch, naming the file (or directory) it failed on, like Node's fs errors. */
function batchError(err: unknown, dir: Buffer, files: TreeEntry[]): unknown {
  const e = err as NodeJS.ErrnoException & { index?: number };
  if (typeof e?.index !== 'number' || !e.code) return err;
  const file = files[e.index];
  const path = file ? joinPath(dir, file.name) : dir;
  return Object.assign(new Error(`${e.code}: ${e.syscall ?? 'write'} failed for ${showPath(path)}`), {
    code: e.code,
    errno: e.errno,
    syscall: e.syscall,
    path: path.toString(),
  });
}
