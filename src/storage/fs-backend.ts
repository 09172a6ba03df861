// Local filesystem backend: one file per object under a root directory. put() writes a temp file in the
// target directory, fsyncs it, renames it over the final name and fsyncs the directory (natively, in one
// trip to the addon's device threads), so a crash never leaves a partial object under its final name
// (only a `.tmp-*` file that list() ignores). Ranged pack reads go to those threads too.
import { randomBytes } from 'node:crypto';
import { close as closeFd, fstat as fstatFd, open as openFd, promises as fs } from 'node:fs';
import { dirname, join } from 'node:path';
import { BunkerError } from '../core/index.js';
import { nativeStorageFs } from './native.js';
import { assertObjectName, notFoundError, type ByteRange, type ObjectInfo, type StorageBackend } from './backend.js';

const TEMP_PREFIX = '.tmp-';
/**
 * Packs (`data/…`, named by their content, never rewritten) are read in many small ranges by a
 * restore; their descriptors are kept open, this many at most, instead of an open/fstat/close per range.
 */
const OPEN_PACKS = 32;

interface OpenPack {
  file: Promise<{ fd: number; size: number }>;
  /** Reads in progress: the descriptor is closed only when none is (a closed number could be reused). */
  users: number;
  /** Evicted or deleted while in use: close when the last user is done. */
  retired: boolean;
}

const isPack = (name: string) => name.startsWith('data/');

export class FsBackend implements StorageBackend {
  readonly location: string;
  private readonly knownDirs = new Set<string>();
  /** Open pack descriptors, least recently used first (Map iteration order). */
  private readonly packs = new Map<string, OpenPack>();

  constructor(private readonly root: string) {
    this.location = root;
  }

  private path(name: string): string {
    assertObjectName(name);
    return join(this.root, ...name.split('/'));
  }

  private fail(op: string, name: string, err: unknown): BunkerError {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    const hint =
      code === 'ENOSPC' ? 'Free disk space on the repository volume.' : code === 'EACCES' || code === 'EPERM'
        ? 'Check the permissions of the repository directory.' : undefined;
    return new BunkerError('storage', `${op} ${name} in ${this.location} failed: ${code}`, { cause: err, hint });
  }

  private async ensureDir(dir: string): Promise<void> {
    if (this.knownDirs.has(dir)) return;
    await fs.mkdir(dir, { recursive: true });
    this.knownDirs.add(dir);
  }

  async put(name: string, body: Uint8Array | readonly Uint8Array[]): Promise<void> {
    const final = this.path(name);
    const dir = dirname(final);
    const temp = join(dir, TEMP_PREFIX + randomBytes(8).toString('hex'));
    const parts = Array.isArray(body) ? (body as readonly Uint8Array[]) : [body as Uint8Array];
    try {
      await this.ensureDir(dir);
      // Packs bypass the page cache (O_DIRECT): a backup's packs are not read again soon, the copy into
      // the page cache was a 1.1 GB store's largest kernel cost here, and the application's pages stay.
      await nativeStorageFs().writeObject(Buffer.from(temp), Buffer.from(final), Buffer.from(dir), parts, isPack(name));
    } catch (err) {
      throw this.fail('writing', name, err);
    }
  }

  async get(name: string, range?: ByteRange): Promise<Buffer> {
    if (range && isPack(name)) return this.getPackRange(name, range);
    const path = this.path(name);
    let handle: fs.FileHandle;
    try {
      handle = await fs.open(path, 'r');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw notFoundError(this.location, name);
      throw this.fail('reading', name, err);
    }
    try {
      const size = (await handle.stat()).size;
      const offset = range?.offset ?? 0;
      const length = range ? range.length : size;
      if (offset < 0 || length < 0 || offset + length > size) {
        throw new BunkerError('corrupt', `object ${name} is ${size} bytes, shorter than the ${offset + length} bytes expected (truncated?)`, {
          hint: 'Run `bunker repo:check` to find what is damaged.',
          details: { name },
        });
      }
      const out = Buffer.allocUnsafe(length);
      let read = 0;
      while (read < length) {
        const { bytesRead } = await handle.read(out, read, length - read, offset + read);
        if (bytesRead === 0) throw new BunkerError('corrupt', `object ${name} shrank while being read`, { details: { name } });
        read += bytesRead;
      }
      return out;
    } catch (err) {
      if (err instanceof BunkerError) throw err;
      throw this.fail('reading', name, err);
    } finally {
      await handle.close();
    }
  }

  private async getPackRange(name: string, range: ByteRange): Promise<Buffer> {
    let pack = this.packs.get(name);
    if (pack) {
      this.packs.delete(name); // re-inserted below: most recently used last
    } else {
      const path = this.path(name);
      pack = {
        users: 0,
        retired: false,
        file: new Promise((resolve, reject) =>
          openFd(path, 'r', (err, fd) => {
            if (err) return reject(err);
            fstatFd(fd, (err2, st) => (err2 ? (closeFd(fd, () => {}), reject(err2)) : resolve({ fd, size: st.size })));
          }),
        ),
      };
    }
    this.packs.set(name, pack);
    pack.users++;
    this.evictPacks();
    try {
      let file: { fd: number; size: number };
      try {
        file = await pack.file;
      } catch (err) {
        if (this.packs.get(name) === pack) this.packs.delete(name);
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw notFoundError(this.location, name);
        throw this.fail('reading', name, err);
      }
      const { offset, length } = range;
      if (offset < 0 || length < 0 || offset + length > file.size) {
        throw new BunkerError('corrupt', `object ${name} is ${file.size} bytes, shorter than the ${offset + length} bytes expected (truncated?)`, {
          hint: 'Run `bunker repo:check` to find what is damaged.',
          details: { name },
        });
      }
      const out = Buffer.allocUnsafe(length);
      const done = await nativeStorageFs()
        .readAt(file.fd, out, 0, length, offset)
        .catch((err: unknown) => {
          throw this.fail('reading', name, err);
        });
      if (done < length) throw new BunkerError('corrupt', `object ${name} shrank while being read`, { details: { name } });
      return out;
    } finally {
      pack.users--;
      if (pack.retired) this.closePack(pack);
    }
  }

  /** Retires the least recently used packs beyond OPEN_PACKS. */
  private evictPacks(): void {
    for (const [name, pack] of this.packs) {
      if (this.packs.size <= OPEN_PACKS) return;
      this.packs.delete(name);
      pack.retired = true;
      this.closePack(pack);
    }
  }

  private closePack(pack: OpenPack): void {
    if (pack.users > 0) return;
    pack.file.then(({ fd }) => closeFd(fd, () => {}), () => {});
  }

  async stat(name: string): Promise<ObjectInfo | null> {
    try {
      const st = await fs.stat(this.path(name));
      return st.isFile() ? { name, size: st.size } : null;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw this.fail('inspecting', name, err);
    }
  }

  async list(prefix: string): Promise<ObjectInfo[]> {
    // Walk only the directory the prefix names, then filter by the rest of the prefix.
    const cut = prefix.lastIndexOf('/');
    const dirPart = cut >= 0 ? prefix.slice(0, cut) : '';
    const out: ObjectInfo[] = [];
    const walk = async (rel: string): Promise<void> => {
      let entries: import('node:fs').Dirent[];
      try {
        entries = await fs.readdir(rel ? join(this.root, ...rel.split('/')) : this.root, { withFileTypes: true });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
        throw this.fail('listing', rel || '/', err);
      }
      for (const entry of entries) {
        if (entry.name.startsWith(TEMP_PREFIX)) continue;
        const name = rel ? `${rel}/${entry.name}` : entry.name;
        if (entry.isDirectory()) {
          if (name.startsWith(prefix) || prefix.startsWith(name + '/')) await walk(name);
        } else if (entry.isFile() && name.startsWith(prefix)) {
          const st = await fs.stat(join(this.root, ...name.split('/'))).catch(() => null);
          if (st) out.push({ name, size: st.size });
        }
      }
    };
    await walk(dirPart);
    return out;
  }

  async delete(name: string): Promise<void> {
    const pack = this.packs.get(name);
    if (pack) {
      this.packs.delete(name);
      pack.retired = true;
      this.closePack(pack);
    }
    try {
      await fs.rm(this.path(name), { force: true });
    } catch (err) {
      throw this.fail('deleting', name, err);
    }
  }
}

