// The tree object: one blob per directory, stored with repo.putTree(). The files engine writes and
// reads it; the repository's check and prune follow it through treeReferences() without knowing the
// rest. Binary rather than JSON because names are raw bytes (non-UTF-8 names must survive) and a
// mount can hold millions of entries.
//
// Layout (all integers unsigned LEB128 varints unless said; times are zigzag varints of nanoseconds):
//   "BKT" 0x01                      magic + format version
//   count                           number of entries, sorted by raw name bytes, no duplicates
//   per entry:
//     nameLen name                  one path component, raw bytes
//     type (1 byte)                 EntryType code below
//     mode uid gid                  permission bits incl. setuid/setgid/sticky (mode & 0o7777)
//     mtimeNs ctimeNs (zigzag)      ctime and ino are kept only to detect unchanged files next time
//     ino flags
//     file:     size nChunks chunk*32 linkGroup   (linkGroup 0 = not hard-linked)
//     dir:      subtree id (32 bytes)
//     symlink:  targetLen target
//     chardev/blockdev: rdev
//     if flags & XATTRS: n (nameLen name valueLen value)*n
import { BunkerError } from '../core/errors.js';
import type { BlobId, StreamRef } from './types.js';

export type EntryType = 'file' | 'dir' | 'symlink' | 'fifo' | 'socket' | 'chardev' | 'blockdev';

const TYPE_CODES: Record<EntryType, number> = {
  file: 1,
  dir: 2,
  symlink: 3,
  fifo: 4,
  socket: 5,
  chardev: 6,
  blockdev: 7,
};
const CODE_TYPES = new Map<number, EntryType>(Object.entries(TYPE_CODES).map(([t, c]) => [c, t as EntryType]));

/** Entry flag bits. */
export const FLAG_SPARSE = 1; // the file had holes: restore writes zero blocks as holes
export const FLAG_XATTRS = 2;
export const FLAG_UNSTABLE = 4; // the file kept changing while read: content may be inconsistent

export interface TreeEntry {
  /** One path component, raw bytes. */
  name: Buffer;
  type: EntryType;
  /** Permission bits including setuid, setgid and sticky (st_mode & 0o7777). */
  mode: number;
  uid: number;
  gid: number;
  /** Nanoseconds since the epoch (negative before 1970). */
  mtimeNs: bigint;
  ctimeNs: bigint;
  ino: bigint;
  flags: number;
  /** Files: their contents. */
  content?: StreamRef;
  /** Files: entries of one mount sharing a non-zero linkGroup are hard links to one inode. */
  linkGroup?: number;
  /** Directories: the tree blob of their contents. */
  subtree?: BlobId;
  /** Symlinks: the target, raw bytes, never resolved. */
  target?: Buffer;
  /** Character and block devices. */
  rdev?: bigint;
  /** User extended attributes (names include the "user." prefix). */
  xattrs?: Array<[Buffer, Buffer]>;
  /**
   * The entry's bytes in the tree it was decoded from (decodeTree's withEncoded), which encodeTree
   * copies instead of encoding the fields again. Only for an entry equal to the decoded one in every
   * field: whoever changes a field or builds a new entry must leave it unset.
   */
  encoded?: Buffer;
}

const MAGIC = Buffer.from([0x42, 0x4b, 0x54, 0x01]); // "BKT" v1

class Out {
  buf = Buffer.allocUnsafe(4096);
  len = 0;
  private ensure(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.len + n) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, 0, this.len);
    this.buf = next;
  }
  byte(b: number): void {
    this.ensure(1);
    this.buf[this.len++] = b;
  }
  bytes(b: Uint8Array): void {
    this.ensure(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
  }
  uint(n: number): void {
    if (!Number.isSafeInteger(n) || n < 0) throw new BunkerError('internal', `tree: bad integer ${n}`);
    this.ensure(10);
    while (n >= 0x80) {
      this.buf[this.len++] = (n % 0x80) | 0x80;
      n = Math.floor(n / 0x80);
    }
    this.buf[this.len++] = n;
  }
  big(n: bigint): void {
    if (n < 0n) throw new BunkerError('internal', `tree: bad integer ${n}`);
    if (n <= 0x1fffffffffffffn) return this.uint(Number(n)); // same bytes, without bigint arithmetic
    if (n <= 0xffffffffffffffffn) {
      // Nanosecond times land here (2^60 and up): the low 28 bits as four varint bytes, the rest as a
      // number, the same bytes as the loop below with three bigint operations instead of ~27.
      this.ensure(10);
      let low = Number(n & 0xfffffffn);
      for (let i = 0; i < 4; i++) {
        this.buf[this.len++] = (low & 0x7f) | 0x80;
        low >>>= 7;
      }
      return this.uint(Number(n >> 28n));
    }
    this.ensure(20);
    while (n >= 0x80n) {
      this.buf[this.len++] = Number(n & 0x7fn) | 0x80;
      n >>= 7n;
    }
    this.buf[this.len++] = Number(n);
  }
  zigzag(n: bigint): void {
    this.big(n >= 0n ? n << 1n : ((-n) << 1n) - 1n);
  }
  lenBytes(b: Uint8Array): void {
    this.uint(b.length);
    this.bytes(b);
  }
  id(id: BlobId): void {
    this.ensure(32);
    // Buffer.write stops at the first non-hex pair, so a short count means a malformed id.
    if (id.length !== 64 || this.buf.write(id, this.len, 32, 'hex') !== 32) throw new BunkerError('internal', `tree: bad blob id "${id}"`);
    this.len += 32;
  }
}

class In {
  pos = 0;
  constructor(private readonly buf: Buffer) {}
  private fail(what: string): never {
    throw new BunkerError('corrupt', `tree object is malformed: ${what} at byte ${this.pos}`, {
      hint: 'Run `bunker check` on the repository; the snapshot that uses this tree cannot be restored as is.',
    });
  }
  get done(): boolean {
    return this.pos >= this.buf.length;
  }
  byte(): number {
    const b = this.buf[this.pos];
    if (b === undefined) this.fail('truncated');
    this.pos++;
    return b;
  }
  bytes(n: number): Buffer {
    if (this.pos + n > this.buf.length) this.fail('truncated');
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }
  uint(): number {
    let n = 0;
    let mul = 1;
    for (let i = 0; i < 8; i++) {
      const b = this.byte();
      n += (b & 0x7f) * mul;
      if (b < 0x80) {
        if (!Number.isSafeInteger(n)) this.fail('integer too large');
        return n;
      }
      mul *= 0x80;
    }
    return this.fail('integer too large');
  }
  /** Set by varint(): bits 0-48 of the value, and the bits above (-1: none, the value fits 49 bits). */
  private low = 0;
  private high = -1;
  /**
   * Reads a varint of up to 10 bytes into `low` and `high` as numbers (most values, inodes and sizes,
   * fit 49 bits; nanosecond times take 9 bytes). False, with nothing consumed, for a longer one.
   */
  private varint(): boolean {
    const start = this.pos;
    let low = 0;
    let mul = 1;
    for (let i = 0; i < 7; i++) {
      const b = this.byte();
      low += (b & 0x7f) * mul;
      if (b < 0x80) {
        this.low = low;
        this.high = -1;
        return true;
      }
      mul *= 0x80;
    }
    let high = 0;
    mul = 1;
    for (let i = 7; i < 10; i++) {
      const b = this.byte();
      high += (b & 0x7f) * mul;
      if (b < 0x80) {
        this.low = low;
        this.high = high;
        return true;
      }
      mul *= 0x80;
    }
    this.pos = start;
    return false;
  }
  /** A varint of any length, the generic bigint way (more than 10 bytes: only crafted or odd trees). */
  private longVarint(): bigint {
    let n = 0n;
    let shift = 0n;
    for (let i = 0; i < 19; i++) {
      const b = this.byte();
      n |= BigInt(b & 0x7f) << shift;
      if (b < 0x80) return n;
      shift += 7n;
    }
    return this.fail('integer too large');
  }
  big(): bigint {
    if (!this.varint()) return this.longVarint();
    return this.high < 0 ? BigInt(this.low) : (BigInt(this.high) << 49n) | BigInt(this.low);
  }
  zigzag(): bigint {
    if (!this.varint()) {
      const z = this.longVarint();
      return z & 1n ? -((z + 1n) >> 1n) : z >> 1n;
    }
    // The sign is the low bit, read while still a number: a nanosecond time costs three bigint
    // operations instead of six. z = high·2^49 + low, so z >> 1 = high·2^48 + ⌊low / 2⌋.
    const negative = this.low % 2 === 1;
    if (this.high < 0) return BigInt(negative ? -(this.low + 1) / 2 : this.low / 2);
    const half = (BigInt(this.high) << 48n) | BigInt(Math.floor(this.low / 2));
    return negative ? -half - 1n : half;
  }
  lenBytes(): Buffer {
    return Buffer.from(this.bytes(this.uint()));
  }
  id(): BlobId {
    if (this.pos + 32 > this.buf.length) this.fail('truncated');
    this.pos += 32;
    return this.buf.toString('hex', this.pos - 32, this.pos);
  }
}

/** Encodes a directory's entries (sorted here by raw name bytes). Entries with equal names are refused. */
export function encodeTree(entries: readonly TreeEntry[]): Buffer {
  // By raw name bytes. Compared as latin1 strings (one code unit per byte, so the same order), which
  // sorts a 200-entry folder about 40 % faster than a Buffer.compare call per comparison.
  const sorted = entries
    .map((e) => ({ key: e.name.toString('latin1'), e }))
    .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  const out = new Out();
  out.bytes(MAGIC);
  out.uint(sorted.length);
  for (let i = 0; i < sorted.length; i++) {
    const e = sorted[i]!.e;
    if (i > 0 && sorted[i - 1]!.key === sorted[i]!.key) {
      throw new BunkerError('internal', `tree: duplicate entry name ${JSON.stringify(e.name.toString('latin1'))}`);
    }
    if (e.encoded) {
      out.bytes(e.encoded);
      continue;
    }
    out.lenBytes(e.name);
    out.byte(TYPE_CODES[e.type]);
    out.uint(e.mode & 0o7777);
    out.uint(e.uid);
    out.uint(e.gid);
    out.zigzag(e.mtimeNs);
    out.zigzag(e.ctimeNs);
    out.big(e.ino);
    const flags = (e.flags & ~FLAG_XATTRS) | (e.xattrs && e.xattrs.length > 0 ? FLAG_XATTRS : 0);
    out.uint(flags);
    switch (e.type) {
      case 'file': {
        const content = e.content ?? { size: 0, chunks: [] };
        out.uint(content.size);
        out.uint(content.chunks.length);
        for (const c of content.chunks) out.id(c);
        out.uint(e.linkGroup ?? 0);
        break;
      }
      case 'dir':
        if (!e.subtree) throw new BunkerError('internal', 'tree: directory entry without a subtree');
        out.id(e.subtree);
        break;
      case 'symlink':
        out.lenBytes(e.target ?? Buffer.alloc(0));
        break;
      case 'chardev':
      case 'blockdev':
        out.big(e.rdev ?? 0n);
        break;
      default:
        break;
    }
    if (flags & FLAG_XATTRS) {
      out.uint(e.xattrs!.length);
      for (const [name, value] of e.xattrs!) {
        out.lenBytes(name);
        out.lenBytes(value);
      }
    }
  }
  return Buffer.from(out.buf.subarray(0, out.len));
}

/**
 * Decodes a tree object. Structure is checked (corrupt on any malformation); names are returned as
 * stored: whoever writes them to disk must check them (see the files engine's restore).
 */
export function decodeTree(blob: Buffer, options: { withEncoded?: boolean } = {}): TreeEntry[] {
  const r = new In(blob);
  if (blob.length < 4 || Buffer.compare(blob.subarray(0, 4), MAGIC) !== 0) {
    throw new BunkerError('corrupt', 'tree object has an unknown format (bad magic or version)', {
      hint: 'The snapshot was written by a newer Bunker or is damaged; run `bunker check`.',
    });
  }
  r.bytes(4);
  const count = r.uint();
  const entries: TreeEntry[] = [];
  for (let i = 0; i < count; i++) {
    const start = r.pos;
    // With the encoded bytes kept, the blob stays alive anyway: the name can be a view of it too.
    const name = options.withEncoded ? r.bytes(r.uint()) : r.lenBytes();
    const code = r.byte();
    const type = CODE_TYPES.get(code);
    if (!type) throw new BunkerError('corrupt', `tree object is malformed: unknown entry type ${code}`);
    const e: TreeEntry = {
      name,
      type,
      mode: r.uint() & 0o7777,
      uid: r.uint(),
      gid: r.uint(),
      mtimeNs: r.zigzag(),
      ctimeNs: r.zigzag(),
      ino: r.big(),
      flags: r.uint(),
    };
    switch (type) {
      case 'file': {
        const size = r.uint();
        const n = r.uint();
        const chunks: BlobId[] = [];
        for (let j = 0; j < n; j++) chunks.push(r.id());
        e.content = { size, chunks };
        e.linkGroup = r.uint();
        break;
      }
      case 'dir':
        e.subtree = r.id();
        break;
      case 'symlink':
        e.target = r.lenBytes();
        break;
      case 'chardev':
      case 'blockdev':
        e.rdev = r.big();
        break;
      default:
        break;
    }
    if (e.flags & FLAG_XATTRS) {
      const n = r.uint();
      e.xattrs = [];
      for (let j = 0; j < n; j++) e.xattrs.push([r.lenBytes(), r.lenBytes()]);
    }
    if (options.withEncoded) e.encoded = blob.subarray(start, r.pos);
    entries.push(e);
  }
  if (!r.done) throw new BunkerError('corrupt', 'tree object is malformed: trailing bytes');
  return entries;
}

/** The blobs a tree object points at: subdirectory trees and file contents (for check and prune). */
export function treeReferences(blob: Buffer): { subtrees: BlobId[]; streams: StreamRef[] } {
  const subtrees: BlobId[] = [];
  const streams: StreamRef[] = [];
  for (const e of decodeTree(blob)) {
    if (e.subtree) subtrees.push(e.subtree);
    if (e.content && e.content.chunks.length > 0) streams.push(e.content);
  }
  return { subtrees, streams };
}
