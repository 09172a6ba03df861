// Promise wrappers over the callback fs API on raw descriptors. fs.promises' FileHandle costs about
// twice as much main-thread time per call (an object, a close tracker, a promise round trip per
// method), which is most of the engine's own time on trees of small files. ThreadCalls decides when
// the synchronous calls are cheaper still.
import fs, { type BigIntStats } from 'node:fs';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { constants as OS } from 'node:os';
import { getSystemErrorName } from 'node:util';
import { nativeFs } from './native.js';
import { joinPath, showPath } from './paths.js';

const BURST = 128;
const SLOW_US = 200;
const SLOW_MS = 50;
/** After a slow call or burst, calls go to the pool for this long, doubled on every further trip. */
const RETRY_MS = 1000;

/**
 * Runs file-system calls on the main thread while the page cache serves them: a thread-pool round trip
 * (submit, futex wake-up, completion) costs several times a cached call. The event loop gets a turn
 * every BURST calls. A burst averaging over SLOW_US per call, or one call over SLOW_MS, means a disk
 * (or a network file system) is probably being waited for: `enabled` turns false and callers use the
 * pool, where such waits overlap and never stall the loop. The bounds are far above a cached call
 * (2-20 µs), but a busy host can still deschedule this thread for 50 ms in the middle of one. So a
 * trip is not for good: after RETRY_MS the next burst runs here again as a trial, and each further
 * trip doubles the wait, so a really slow disk costs a stalled burst ever more rarely. A ThreadCalls
 * made disabled stays disabled.
 */
export class ThreadCalls {
  private calls = 0;
  private ms = 0;
  private pause: Promise<void> | undefined;
  private trips = 0;
  /** When the trial after a trip may start; Infinity while enabled, or when made disabled. */
  private retryAt = Infinity;

  constructor(
    public enabled: boolean,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Whether the next call may run on this thread; first gives the loop its turn when a burst is done. */
  async ready(): Promise<boolean> {
    if (this.pause) await this.pause;
    if (!this.enabled && this.now() >= this.retryAt) {
      this.enabled = true;
      this.retryAt = Infinity;
      this.calls = 0;
      this.ms = 0;
    }
    if (this.enabled && this.calls >= BURST) {
      if (this.ms > (this.calls * SLOW_US) / 1000) this.trip();
      this.calls = 0;
      this.ms = 0;
      // Every caller waits for the same turn, so the loop really gets one (a single caller waiting
      // would leave the others running on as microtasks).
      this.pause = nextTurn().then(() => {
        this.pause = undefined;
      });
      await this.pause;
    }
    return this.enabled;
  }

  /** Runs one call on this thread, counting its time toward the current burst. */
  run<T>(call: () => T): T {
    this.calls++;
    const started = this.now();
    try {
      return call();
    } finally {
      const ms = this.now() - started;
      this.ms += ms;
      if (ms > SLOW_MS && this.enabled) this.trip();
    }
  }

  private trip(): void {
    this.enabled = false;
    this.retryAt = this.now() + RETRY_MS * 2 ** this.trips++;
  }
}

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

/** Synchronous writeAllAt, for ThreadCalls. */
export function writeAllAtSync(fd: number, buf: Buffer, offset: number, length: number, position: number): void {
  while (length > 0) {
    const n = fs.writeSync(fd, buf, offset, length, position);
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

/** What the walk reads of an lstat: Node's BigIntStats has it, and so does a statDir() row. */
export type EntryStat = Pick<
  BigIntStats,
  'mode' | 'uid' | 'gid' | 'size' | 'blocks' | 'nlink' | 'dev' | 'ino' | 'rdev' | 'mtimeNs' | 'ctimeNs' | 'isFile' | 'isDirectory' | 'isSymbolicLink' | 'isFIFO' | 'isSocket' | 'isCharacterDevice' | 'isBlockDevice'
>;

/** int64s per entry in statDir(): errno, mode, uid, gid, size, blocks, nlink, dev, ino, rdev, mtime ns, ctime ns. */
const STAT_FIELDS = 12;
const S_IFMT = 0o170000n;

/** One entry of a statDir() result. */
class RowStat implements EntryStat {
  readonly mode: bigint;
  readonly uid: bigint;
  readonly gid: bigint;
  readonly size: bigint;
  readonly blocks: bigint;
  readonly nlink: bigint;
  readonly dev: bigint;
  readonly ino: bigint;
  readonly rdev: bigint;
  readonly mtimeNs: bigint;
  readonly ctimeNs: bigint;
  constructor(s: BigInt64Array, at: number) {
    this.mode = s[at + 1]!;
    this.uid = s[at + 2]!;
    this.gid = s[at + 3]!;
    this.size = s[at + 4]!;
    this.blocks = s[at + 5]!;
    this.nlink = s[at + 6]!;
    this.dev = s[at + 7]!;
    this.ino = s[at + 8]!;
    this.rdev = s[at + 9]!;
    this.mtimeNs = s[at + 10]!;
    this.ctimeNs = s[at + 11]!;
  }
  isFile(): boolean {
    return (this.mode & S_IFMT) === 0o100000n;
  }
  isDirectory(): boolean {
    return (this.mode & S_IFMT) === 0o040000n;
  }
  isSymbolicLink(): boolean {
    return (this.mode & S_IFMT) === 0o120000n;
  }
  isFIFO(): boolean {
    return (this.mode & S_IFMT) === 0o010000n;
  }
  isSocket(): boolean {
    return (this.mode & S_IFMT) === 0o140000n;
  }
  isCharacterDevice(): boolean {
    return (this.mode & S_IFMT) === 0o020000n;
  }
  isBlockDevice(): boolean {
    return (this.mode & S_IFMT) === 0o060000n;
  }
}

/** A directory with more entries than this is listed name by name instead (bounded memory). */
const STAT_DIR_LIMIT = 65_536;

/**
 * A directory's names and, when it was read in one statDir() trip, each one's lstat (null: gone
 * since it was listed). Without stats (a very large directory) the caller stats each name.
 */
export async function listDir(dir: Buffer, limit = STAT_DIR_LIMIT): Promise<{ names: Buffer[]; stats?: Array<EntryStat | null> }> {
  const r = await nativeFs().statDir(dir, limit);
  if (r.truncated) return { names: await fs.promises.readdir(dir, { encoding: 'buffer' }) };
  const names: Buffer[] = [];
  const stats: Array<EntryStat | null> = [];
  for (let at = 0, i = 0; at < r.names.length; i++) {
    const end = r.names.indexOf(0, at);
    const name = r.names.subarray(at, end);
    at = end + 1;
    const errno = Number(r.stats[i * STAT_FIELDS]);
    if (errno !== 0 && errno !== OS.errno.ENOENT && errno !== OS.errno.ENOTDIR) {
      const code = getSystemErrorName(-errno);
      throw Object.assign(new Error(`${code}: lstat failed for ${showPath(joinPath(dir, name))}`), { code, errno: -errno, syscall: 'lstat' });
    }
    names.push(name);
    stats.push(errno === 0 ? new RowStat(r.stats, i * STAT_FIELDS) : null);
  }
  return { names, stats };
}
