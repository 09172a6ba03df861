// The small C addon (native/bunker-fs.c, built by `npm ci` through the root binding.gyp) for what
// Node's fs lacks: nanosecond timestamps, user xattrs, mknod (FIFOs, devices) and RENAME_EXCHANGE, and
// batched creation of small files (one thread-pool trip for a directory's batch), and writes of
// large files that bypass the page cache (O_DIRECT).
import { loadNativeAddon } from '../../core/native-addon.js';

export interface NativeFs {
  /** utimensat(AT_SYMLINK_NOFOLLOW) with times in nanoseconds since the epoch. */
  utimens(path: Buffer, atimeNs: bigint, mtimeNs: bigint): void;
  /** mknod(2): mode includes the file type bits (S_IFIFO, S_IFCHR, S_IFBLK). */
  mknod(path: Buffer, mode: number, rdev: bigint): void;
  /** renameat2(RENAME_EXCHANGE): swaps two existing paths in one atomic step. */
  exchange(a: Buffer, b: Buffer): void;
  /** The "user." extended attributes of a path, not following symlinks. */
  userXattrs(path: Buffer): Array<[Buffer, Buffer]>;
  /** The same for an open descriptor (flistxattr/fgetxattr). */
  fdUserXattrs(fd: number): Array<[Buffer, Buffer]>;
  setXattr(path: Buffer, name: Buffer, value: Buffer): void;
  /**
   * Creates new files in directory `dir` on the thread pool, in one trip: `names` each followed by a
   * NUL, `parts` their contents back to back (pieces need not line up with files), `meta` per file
   * [length, mode, flags (1 fchmod, 2 fchown), uid, gid], `mtimes` per file in nanoseconds (atime too). Each is opened O_CREAT | O_EXCL |
   * O_NOFOLLOW relative to `dir` (itself opened O_NOFOLLOW), written, fchown'ed, fchmod'ed, futimens'ed
   * and closed. Rejects at the first failure with .code, .errno, .syscall and .index (-1: the directory).
   */
  writeFiles(dir: Buffer, names: Buffer, parts: readonly Buffer[], meta: Uint32Array, mtimes: BigInt64Array): Promise<void>;
  /**
   * Writes the parts at `position` on the addon's device threads (not libuv's pool, which the codec
   * needs while a write waits for the disk). On a descriptor opened with O_DIRECT (position
   * then a multiple of 4096) they go through an aligned buffer instead of the page cache, and only
   * whole 4 KiB blocks are written, unless `final`, which pads the last block and cuts the file back
   * to its length; resolves to the bytes written (the caller passes the rest again next time). If the
   * file system refuses the direct writes, the descriptor loses O_DIRECT and everything is written.
   */
  writeAt(fd: number, parts: readonly Uint8Array[], position: number, final: boolean): Promise<number>;
  /**
   * A directory's entries and their lstat in one thread-pool trip (a trip per entry costs several
   * times the cached lstat): `names` each followed by a NUL, in readdir order, and per entry
   * STAT_FIELDS int64s in `stats` (see fsio.ts's RowStat). Stops at `limit` entries with `truncated`.
   */
  statDir(dir: Buffer, limit: number): Promise<{ names: Buffer; stats: BigInt64Array; truncated: boolean }>;
}

let loaded: NativeFs | undefined;

export function nativeFs(): NativeFs {
  loaded ??= loadNativeAddon<NativeFs>('bunker_fs.node', "the files engine's native addon", 'engine_unavailable');
  return loaded;
}
