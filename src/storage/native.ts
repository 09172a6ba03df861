// The local backend's use of the C addon native/bunker-fs.c (built by `npm ci` from binding.gyp).
import { loadNativeAddon } from '../core/native-addon.js';

export interface NativeStorageFs {
  /**
   * On the addon's device threads (not libuv's pool), in one trip: creates `temp` (O_EXCL, mode 0600;
   * with O_DIRECT when `direct` and the file system allows it), writes the parts in order, fsyncs,
   * renames it to `final` and fsyncs `dir`. On failure the temp file is removed and the error carries
   * .code and .syscall.
   */
  writeObject(temp: Buffer, final: Buffer, dir: Buffer, parts: readonly Uint8Array[], direct: boolean): Promise<void>;
  /**
   * pread() into buffer[offset, offset + length) from `position`, on the device threads (a pack not in
   * the page cache waits for the disk, and must not hold a thread the codec needs); resolves to the
   * bytes read, fewer only at the end of the file.
   */
  readAt(fd: number, buffer: Uint8Array, offset: number, length: number, position: number): Promise<number>;
}

let loaded: NativeStorageFs | undefined;

export function nativeStorageFs(): NativeStorageFs {
  loaded ??= loadNativeAddon<NativeStorageFs>('bunker_fs.node', "the local storage backend's native addon", 'storage');
  return loaded;
}
