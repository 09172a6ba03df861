// The small C addon (native/bunker-fs.c, built by `npm ci` through the root binding.gyp) for what
// Node's fs lacks: nanosecond timestamps, user xattrs, mknod (FIFOs, devices) and RENAME_EXCHANGE.
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
  setXattr(path: Buffer, name: Buffer, value: Buffer): void;
}

let loaded: NativeFs | undefined;

export function nativeFs(): NativeFs {
  loaded ??= loadNativeAddon<NativeFs>('bunker_fs.node', "the files engine's native addon", 'engine_unavailable');
  return loaded;
}
