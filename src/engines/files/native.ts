// The small C addon (native/bunker-fs.c, built by `npm ci` through the root binding.gyp) for what
// Node's fs lacks: nanosecond timestamps, user xattrs, mknod (FIFOs, devices) and RENAME_EXCHANGE.
import { createRequire } from 'node:module';
import { BunkerError } from '../../core/errors.js';

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
  if (loaded) return loaded;
  // src/engines/files and dist/engines/files are both three levels below the package root.
  const require = createRequire(import.meta.url);
  try {
    loaded = require('../../../build/Release/bunker_fs.node') as NativeFs;
  } catch (err) {
    throw new BunkerError('engine_unavailable', 'the files engine\'s native addon (build/Release/bunker_fs.node) is not built', {
      cause: err,
      hint: 'Run `npm ci` (or `npx node-gyp rebuild`) in the Bunker folder; it needs a C compiler and Node headers.',
    });
  }
  return loaded;
}
