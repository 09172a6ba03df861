// Promise wrappers over the callback fs API on raw descriptors. fs.promises' FileHandle costs about
// twice as much main-thread time per call (an object, a close tracker, a promise round trip per
// method), which is most of the engine's own time on trees of small files.
import fs, { type BigIntStats } from 'node:fs';

function settle<T>(resolve: (v: T) => void, reject: (e: unknown) => void) {
  return (err: NodeJS.ErrnoException | null, value: T) => (err ? reject(err) : resolve(value));
}

export function open(path: Buffer, flags: number, mode?: number): Promise<number> {
  return new Promise((resolve, reject) => fs.open(path, flags, mode, settle(resolve, reject)));
}

export function close(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fs.close(fd, (err) => (err ? reject(err) : resolve())));
}

export function lstat(path: Buffer): Promise<BigIntStats> {
  return new Promise((resolve, reject) => fs.lstat(path, { bigint: true }, settle(resolve, reject)));
}

export function fstat(fd: number): Promise<BigIntStats> {
  return new Promise((resolve, reject) => fs.fstat(fd, { bigint: true }, settle(resolve, reject)));
}

/** One pread(2); resolves to the bytes read. */
export function readAt(fd: number, buf: Buffer, offset: number, length: number, position: number): Promise<number> {
  return new Promise((resolve, reject) => fs.read(fd, buf, offset, length, position, settle(resolve, reject)));
}

/** Writes all of buf[offset, offset + length) at `position` (pwrite until done). */
export async function writeAllAt(fd: number, buf: Buffer, offset: number, length: number, position: number): Promise<void> {
  while (length > 0) {
    const n = await new Promise<number>((resolve, reject) => fs.write(fd, buf, offset, length, position, settle(resolve, reject)));
    offset += n;
    position += n;
    length -= n;
  }
}

export function ftruncate(fd: number, size: number): Promise<void> {
  return new Promise((resolve, reject) => fs.ftruncate(fd, size, (err) => (err ? reject(err) : resolve())));
}

export function fchown(fd: number, uid: number, gid: number): Promise<void> {
  return new Promise((resolve, reject) => fs.fchown(fd, uid, gid, (err) => (err ? reject(err) : resolve())));
}

export function fchmod(fd: number, mode: number): Promise<void> {
  return new Promise((resolve, reject) => fs.fchmod(fd, mode, (err) => (err ? reject(err) : resolve())));
}
