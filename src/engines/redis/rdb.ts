// An incremental RDB reader for the files Redis 6.2–7.x writes (RDB versions 9–11). It walks the
// structure without decoding values: each key's value is kept as the raw bytes Redis wrote, which is
// exactly what RESTORE accepts (value encoding + RDB version + CRC64). Only keys are decoded (they
// may be LZF-compressed). Every byte is folded into a CRC64 that is checked against the trailer.
import { BunkerError } from '../../core/errors.js';
import { Crc64 } from './crc64.js';

export const RDB_MIN_VERSION = 6;
/** Redis 7.2 writes RDB version 11; 7.4 (12) adds hash-field expiry types this reader does not know. */
export const RDB_MAX_VERSION = 11;

const OP_FUNCTION2 = 0xf5;
const OP_FUNCTION_PRE_GA = 0xf6;
const OP_MODULE_AUX = 0xf7;
const OP_IDLE = 0xf8;
const OP_FREQ = 0xf9;
const OP_AUX = 0xfa;
const OP_RESIZEDB = 0xfb;
const OP_EXPIRETIME_MS = 0xfc;
const OP_EXPIRETIME = 0xfd;
const OP_SELECTDB = 0xfe;
const OP_EOF = 0xff;

export const TYPE_NAMES: Record<number, string> = {
  0: 'string',
  1: 'list',
  2: 'set',
  3: 'zset',
  4: 'hash',
  5: 'zset',
  6: 'module',
  7: 'module',
  9: 'hash (zipmap)',
  10: 'list (ziplist)',
  11: 'set (intset)',
  12: 'zset (ziplist)',
  13: 'hash (ziplist)',
  14: 'list (quicklist)',
  15: 'stream',
  16: 'hash (listpack)',
  17: 'zset (listpack)',
  18: 'list (quicklist)',
  19: 'stream',
  20: 'set (listpack)',
  21: 'stream',
};

/** Every event carries `at`, the stream offset where its entry starts, and `raw`, the entry's bytes. */
export type RdbEvent = (
  | { kind: 'header'; version: number; raw: Buffer }
  | { kind: 'aux'; key: string; value: string; raw: Buffer }
  | { kind: 'selectdb'; db: number; raw: Buffer }
  | { kind: 'resizedb'; db: number; keys: number; raw: Buffer }
  | { kind: 'module-aux'; raw: Buffer }
  | { kind: 'function'; raw: Buffer }
  | {
      kind: 'key';
      db: number;
      key: Buffer;
      /** Absolute expiry in unix ms, or null. */
      expireMs: number | null;
      type: number;
      /** Where the encoded value starts in `raw` (it ends with raw); with the type byte it is a RESTORE payload's body. */
      valueStart: number;
      /** The whole entry as it appeared in the file (expiry, LRU/LFU opcodes, type, key, value). Valid until the next push(). */
      raw: Buffer;
    }
  | { kind: 'eof'; raw: Buffer; checksum: Buffer; checksumVerified: boolean }
) & { at: number };

/** Thrown inside the walker when the buffered bytes end mid-entry; `need` is the bytes required from the entry start. */
class NeedMore {
  constructor(readonly need: number) {}
}

function corrupt(label: string, what: string, offset: number): BunkerError {
  return new BunkerError('corrupt', `${label}: the RDB stream is corrupt at byte ${offset}: ${what}`, {
    hint: 'The backup cannot be restored as it is; restore an older backup, and run a repository check.',
  });
}

/** LZF decompression (the format Redis uses for strings longer than 20 bytes). */
export function lzfDecompress(input: Buffer, outLen: number): Buffer | null {
  const out = Buffer.allocUnsafe(outLen);
  let ip = 0;
  let op = 0;
  while (ip < input.length) {
    const ctrl = input[ip++]!;
    if (ctrl < 32) {
      const len = ctrl + 1;
      if (op + len > outLen || ip + len > input.length) return null;
      input.copy(out, op, ip, ip + len);
      ip += len;
      op += len;
    } else {
      let len = ctrl >> 5;
      if (len === 7) {
        if (ip >= input.length) return null;
        len += input[ip++]!;
      }
      if (ip >= input.length) return null;
      let ref = op - ((ctrl & 0x1f) << 8) - 1 - input[ip++]!;
      len += 2;
      if (ref < 0 || op + len > outLen) return null;
      // Byte by byte: a back-reference may overlap what it produces.
      for (let i = 0; i < len; i++) out[op++] = out[ref++]!;
    }
  }
  return op === outLen ? out : null;
}

/** Cursor over the buffered bytes of one entry. */
class Cursor {
  buf: Buffer = Buffer.alloc(0);
  start = 0;
  pos = 0;
  /** The bytes available end here (buf may go on with bytes not received yet). */
  end = 0;
  /** Stream offset of buf[0], for messages. */
  base = 0;
  constructor(readonly label: string) {}
  reset(buf: Buffer, start: number, base: number, end = buf.length): void {
    this.buf = buf;
    this.start = start;
    this.pos = start;
    this.base = base;
    this.end = end;
  }
  need(n: number): void {
    if (this.pos + n > this.end) throw new NeedMore(this.pos + n - this.start);
  }
  u8(): number {
    this.need(1);
    return this.buf[this.pos++]!;
  }
  skip(n: number): void {
    this.need(n);
    this.pos += n;
  }
  bad(what: string): BunkerError {
    return corrupt(this.label, what, this.base + this.pos);
  }
  /** A length; `special` is set for the integer/LZF string encodings. */
  len(): { n: number; special: boolean } {
    const b = this.u8();
    switch (b >> 6) {
      case 0:
        return { n: b & 0x3f, special: false };
      case 1:
        return { n: ((b & 0x3f) << 8) | this.u8(), special: false };
      case 2: {
        if (b === 0x80) {
          this.need(4);
          const n = this.buf.readUInt32BE(this.pos);
          this.pos += 4;
          return { n, special: false };
        }
        if (b === 0x81) {
          this.need(8);
          const n = this.buf.readBigUInt64BE(this.pos);
          this.pos += 8;
          if (n > BigInt(Number.MAX_SAFE_INTEGER)) throw this.bad(`length ${n} is out of range`);
          return { n: Number(n), special: false };
        }
        throw this.bad(`unknown length prefix 0x${b.toString(16)}`);
      }
      default:
        return { n: b & 0x3f, special: true };
    }
  }
  /** Skips a length whose value is a field (an id part, a counter that may be -1 as unsigned), not a count. */
  skipLen(): void {
    const b = this.u8();
    const t = b >> 6;
    if (t === 1) this.skip(1);
    else if (b === 0x80) this.skip(4);
    else if (b === 0x81) this.skip(8);
    else if (t !== 0) throw this.bad(`unknown length prefix 0x${b.toString(16)}`);
  }
  plainLen(): number {
    const l = this.len();
    if (l.special) throw this.bad('an encoded string where a length belongs');
    return l.n;
  }
  /** Skips a string in any encoding. */
  skipString(): void {
    const l = this.len();
    if (!l.special) return this.skip(l.n);
    switch (l.n) {
      case 0:
        return this.skip(1);
      case 1:
        return this.skip(2);
      case 2:
        return this.skip(4);
      case 3: {
        const clen = this.plainLen();
        this.plainLen();
        return this.skip(clen);
      }
      default:
        throw this.bad(`unknown string encoding ${l.n}`);
    }
  }
  /** Reads and decodes a string. */
  string(): Buffer {
    const l = this.len();
    if (!l.special) {
      this.need(l.n);
      const s = this.buf.subarray(this.pos, this.pos + l.n);
      this.pos += l.n;
      return s;
    }
    switch (l.n) {
      case 0:
        this.need(1);
        return Buffer.from(String(this.buf.readInt8(this.pos++)));
      case 1: {
        this.need(2);
        const v = this.buf.readInt16LE(this.pos);
        this.pos += 2;
        return Buffer.from(String(v));
      }
      case 2: {
        this.need(4);
        const v = this.buf.readInt32LE(this.pos);
        this.pos += 4;
        return Buffer.from(String(v));
      }
      case 3: {
        const clen = this.plainLen();
        const ulen = this.plainLen();
        this.need(clen);
        const out = lzfDecompress(this.buf.subarray(this.pos, this.pos + clen), ulen);
        if (!out) throw this.bad('an LZF-compressed string does not decompress');
        this.pos += clen;
        return out;
      }
      default:
        throw this.bad(`unknown string encoding ${l.n}`);
    }
  }
  /** Skips a module value (the self-describing opcode format of module type 2 and module aux data). */
  skipModuleValue(): void {
    for (;;) {
      const op = this.plainLen();
      switch (op) {
        case 0:
          return;
        case 1:
        case 2:
          this.skipLen();
          break;
        case 3:
          this.skip(4);
          break;
        case 4:
          this.skip(8);
          break;
        case 5:
          this.skipString();
          break;
        default:
          throw this.bad(`unknown module opcode ${op}`);
      }
    }
  }
}

function skipStreamPel(c: Cursor, withNack: boolean): void {
  const n = c.plainLen();
  for (let i = 0; i < n; i++) {
    c.skip(16); // raw entry id
    if (withNack) {
      c.skip(8); // delivery time, ms
      c.skipLen(); // delivery count
    }
  }
}

/** Skips the value of `type`, leaving the cursor after it. */
function skipValue(c: Cursor, type: number, key: Buffer): void {
  switch (type) {
    case 0: // string
    case 9: // hash zipmap
    case 10: // list ziplist
    case 11: // set intset
    case 12: // zset ziplist
    case 13: // hash ziplist
    case 16: // hash listpack
    case 17: // zset listpack
    case 20: // set listpack
      return c.skipString();
    case 1: // list of strings
    case 2: // set of strings
    case 14: {
      // quicklist of ziplists
      const n = c.plainLen();
      for (let i = 0; i < n; i++) c.skipString();
      return;
    }
    case 3: {
      // zset, scores as strings
      const n = c.plainLen();
      for (let i = 0; i < n; i++) {
        c.skipString();
        const dlen = c.u8();
        if (dlen < 253) c.skip(dlen);
      }
      return;
    }
    case 4: {
      const n = c.plainLen();
      for (let i = 0; i < 2 * n; i++) c.skipString();
      return;
    }
    case 5: {
      // zset, binary double scores
      const n = c.plainLen();
      for (let i = 0; i < n; i++) {
        c.skipString();
        c.skip(8);
      }
      return;
    }
    case 18: {
      // quicklist 2: container kind + node
      const n = c.plainLen();
      for (let i = 0; i < n; i++) {
        c.plainLen();
        c.skipString();
      }
      return;
    }
    case 15:
    case 19:
    case 21: {
      const nodes = c.plainLen();
      for (let i = 0; i < nodes; i++) {
        c.skipString(); // master id
        c.skipString(); // listpack
      }
      c.skipLen(); // length
      c.skipLen(); // last id ms
      c.skipLen(); // last id seq
      if (type >= 19) {
        for (let i = 0; i < 5; i++) c.skipLen(); // first id, max deleted id, entries added
      }
      const groups = c.plainLen();
      for (let g = 0; g < groups; g++) {
        c.skipString(); // name
        c.skipLen(); // last id ms
        c.skipLen(); // last id seq
        if (type >= 19) c.skipLen(); // entries read
        skipStreamPel(c, true);
        const consumers = c.plainLen();
        for (let k = 0; k < consumers; k++) {
          c.skipString(); // name
          c.skip(8); // seen time
          if (type >= 21) c.skip(8); // active time
          skipStreamPel(c, false);
        }
      }
      return;
    }
    case 6:
    case 7:
      throw new BunkerError('engine', `key ${keyForMessage(key)} holds a module type, which Bunker cannot restore`, {
        hint: 'Back up module data with the module’s own tools, or delete or exclude that key.',
        details: { key: keyForMessage(key) },
      });
    default:
      throw c.bad(`unknown value type ${type} for key ${keyForMessage(key)}`);
  }
}

/** A plain length at b[p] (6, 14 or 32 bits) into LEN; returns the position after it, or -1. */
function plainLenAt(b: Buffer, p: number, end: number): number {
  if (p >= end) return -1;
  const x = b[p]!;
  if (x < 0x40) {
    LEN = x;
    return p + 1;
  }
  if (x < 0x80) {
    if (p + 2 > end) return -1;
    LEN = ((x & 0x3f) << 8) | b[p + 1]!;
    return p + 2;
  }
  if (x === 0x80) {
    if (p + 5 > end) return -1;
    LEN = b.readUInt32BE(p + 1);
    return p + 5;
  }
  return -1;
}
let LEN = 0;

/**
 * Skips a string at b[p] (plain, integer or LZF); returns the position after it, or -1 when it is
 * incomplete or unusual (64-bit length, unknown encoding): the general path then decides.
 */
function skipStringAt(b: Buffer, p: number, end: number): number {
  if (p >= end) return -1;
  const x = b[p]!;
  let q: number;
  if (x < 0xc0) {
    q = plainLenAt(b, p, end);
    if (q < 0) return -1;
  } else if (x === 0xc0) {
    LEN = 1;
    q = p + 1;
  } else if (x === 0xc1) {
    LEN = 2;
    q = p + 1;
  } else if (x === 0xc2) {
    LEN = 4;
    q = p + 1;
  } else if (x === 0xc3) {
    q = plainLenAt(b, p + 1, end); // compressed length
    if (q < 0) return -1;
    const clen = LEN;
    q = plainLenAt(b, q, end); // uncompressed length
    if (q < 0) return -1;
    LEN = clen;
  } else {
    return -1;
  }
  q += LEN;
  return q <= end ? q : -1;
}

/**
 * The count-only fast path for the entries that make up most files: optional expiry / LRU / LFU
 * opcodes, then a key whose value is a single string (strings, and the listpack, ziplist and intset
 * encodings). Returns the position after the entry, or -1 for anything else or an incomplete entry.
 */
function skipSimpleEntry(b: Buffer, p: number, end: number): number {
  for (;;) {
    if (p >= end) return -1;
    const op = b[p]!;
    if (op === OP_EXPIRETIME_MS) {
      p += 9;
    } else if (op === OP_IDLE) {
      p = plainLenAt(b, p + 1, end);
      if (p < 0) return -1;
    } else if (op === OP_FREQ) {
      p += 2;
    } else if (op === 0 || (op >= 9 && op <= 13) || op === 16 || op === 17 || op === 20) {
      const q = skipStringAt(b, p + 1, end); // key
      return q < 0 ? -1 : skipStringAt(b, q, end); // value
    } else {
      return -1;
    }
  }
}

const EMPTY = Buffer.alloc(0);
const stringCursor = new Cursor('string value');
/** Decodes a string value (type 0) of a key event: plain, integer-encoded or LZF-compressed. */
export function decodeStringValue(raw: Buffer, valueStart: number): Buffer {
  stringCursor.reset(raw, valueStart, 0);
  try {
    return stringCursor.string();
  } catch (err) {
    if (err instanceof NeedMore) throw stringCursor.bad('a string value runs past its entry');
    throw err;
  }
}

/** A key for messages: printable, quoted, at most 100 characters. */
export function keyForMessage(key: Buffer): string {
  const text = JSON.stringify(key.toString('utf8'));
  return text.length > 100 ? `${text.slice(0, 97)}..."` : text;
}

/**
 * Feed it the RDB bytes in any chunking with push(); it returns the complete events found so far.
 * finish() throws when the stream ended before the EOF opcode and checksum.
 */
export class RdbParser {
  private chunks: Buffer[] = [];
  private buffered = 0;
  /** Bytes the entry at the parse position needs (from its start) before walking it again can succeed. */
  needed = 1;
  /** Stream offset of the next byte to parse. */
  private offset = 0;
  private db = 0;
  private headerDone = false;
  /** Where in the current buffer the CRC still has to start (the EOF opcode folds in up to itself). */
  private crcFrom = 0;
  private readonly cursor: Cursor;
  version = 0;
  done = false;
  readonly crc = new Crc64();
  /** Bytes received after the RDB trailer (the replication end mark), with push(). */
  trailing: Buffer = Buffer.alloc(0);

  /** Keys per db index, counted in countOnly mode (where key events are not returned). */
  readonly keysPerDb = new Map<number, number>();

  /** countOnly: key entries are validated and counted, not returned (see keysPerDb). */
  constructor(
    private readonly label: string,
    private readonly countOnly = false,
  ) {
    this.cursor = new Cursor(label);
  }

  /** Stream offset of the next byte to parse (the end of the RDB once done). */
  get position(): number {
    return this.offset;
  }

  push(chunk: Buffer): RdbEvent[] {
    const events: RdbEvent[] = [];
    if (this.done) {
      this.trailing = Buffer.concat([this.trailing, chunk]);
      return events;
    }
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    if (this.buffered < this.needed) return events;
    const buf = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
    const pos = this.walk(buf, 0, buf.length, events);
    if (this.done) {
      this.trailing = Buffer.from(buf.subarray(pos));
      this.chunks = [];
      this.buffered = 0;
      return events;
    }
    const rest = buf.subarray(pos);
    // Copy a small leftover so the big chunk it points into can be freed.
    this.chunks = rest.length === 0 ? [] : [rest.length < 65536 ? Buffer.from(rest) : rest];
    this.buffered = rest.length;
    return events;
  }

  /**
   * Parses the complete entries in buf[from, to), which must continue the stream where the last call
   * stopped, and folds them into the CRC. Returns where the first incomplete entry starts (see
   * `needed`), or the end of the RDB once done. Events go to `events`; in countOnly mode most keys
   * take a fast path that allocates nothing. Key events point into `buf`.
   */
  walk(buf: Buffer, from: number, to: number, events: RdbEvent[]): number {
    const c = this.cursor;
    const base = this.offset - from; // stream offset of buf[0]
    const countOnly = this.countOnly;
    let pos = from;
    this.crcFrom = from;
    this.needed = 1;
    let counted = 0; // keys counted on the fast path, not yet added to keysPerDb
    while (!this.done && pos < to) {
      if (countOnly && this.headerDone) {
        const next = skipSimpleEntry(buf, pos, to);
        if (next > 0) {
          counted++;
          pos = next;
          continue;
        }
      }
      // Everything else (and an entry the fast path cannot finish) takes the general path.
      if (counted) {
        this.keysPerDb.set(this.db, (this.keysPerDb.get(this.db) ?? 0) + counted);
        counted = 0;
      }
      c.reset(buf, pos, base, to);
      let ev: RdbEvent | null;
      try {
        ev = this.headerDone ? this.entry(c) : this.header(c);
      } catch (err) {
        if (err instanceof NeedMore) {
          this.needed = err.need;
          break;
        }
        throw err;
      }
      this.needed = 1;
      if (ev) events.push(ev);
      pos = c.pos;
    }
    if (counted) this.keysPerDb.set(this.db, (this.keysPerDb.get(this.db) ?? 0) + counted);
    if (!this.done) this.crc.update(buf.subarray(this.crcFrom, pos));
    this.offset = base + pos;
    return pos;
  }

  finish(): void {
    if (!this.done) {
      throw new BunkerError('corrupt', `${this.label}: the RDB stream is truncated at byte ${this.offset + this.buffered}`, {
        hint: 'The backup cannot be restored as it is; restore an older backup, and run a repository check.',
      });
    }
  }

  private header(c: Cursor): RdbEvent {
    c.need(9);
    const magic = c.buf.toString('latin1', c.pos, c.pos + 5);
    const digits = c.buf.toString('latin1', c.pos + 5, c.pos + 9);
    if (magic !== 'REDIS' || !/^\d{4}$/.test(digits)) throw c.bad('it does not start with an RDB header');
    const version = Number(digits);
    if (version < RDB_MIN_VERSION || version > RDB_MAX_VERSION) {
      throw new BunkerError('engine', `${this.label}: RDB version ${version} is not supported (Bunker reads ${RDB_MIN_VERSION}–${RDB_MAX_VERSION}, Redis 6.2–7.2)`, {
        hint: 'Use a Redis version that writes RDB version 11 or older.',
      });
    }
    c.pos += 9;
    this.version = version;
    this.headerDone = true;
    return { kind: 'header', version, raw: c.buf.subarray(c.start, c.pos), at: c.base + c.start };
  }

  private entry(c: Cursor): RdbEvent | null {
    let expireMs: number | null = null;
    let op = c.u8();
    for (;;) {
      if (op === OP_EXPIRETIME_MS) {
        c.need(8);
        expireMs = Number(c.buf.readBigInt64LE(c.pos));
        c.pos += 8;
      } else if (op === OP_EXPIRETIME) {
        c.need(4);
        expireMs = c.buf.readInt32LE(c.pos) * 1000;
        c.pos += 4;
      } else if (op === OP_IDLE) {
        c.plainLen();
      } else if (op === OP_FREQ) {
        c.skip(1);
      } else break;
      op = c.u8();
    }
    const raw = () => c.buf.subarray(c.start, c.pos);
    const at = c.base + c.start;
    switch (op) {
      case OP_EOF: {
        const bodyEnd = c.pos;
        c.need(8);
        const checksum = c.buf.subarray(c.pos, c.pos + 8);
        this.crc.update(c.buf.subarray(this.crcFrom, bodyEnd));
        const disabled = checksum.every((b) => b === 0);
        if (!disabled && !this.crc.equalsLE(checksum)) {
          throw new BunkerError('corrupt', `${this.label}: the RDB checksum does not match (stored ${Buffer.from(checksum).reverse().toString('hex')}, computed ${this.crc.toHex()})`, {
            hint: 'The backup cannot be restored as it is; restore an older backup, and run a repository check.',
          });
        }
        c.pos += 8;
        this.done = true;
        return { kind: 'eof', raw: raw(), at, checksum: Buffer.from(checksum), checksumVerified: !disabled };
      }
      case OP_SELECTDB:
        this.db = c.plainLen();
        return { kind: 'selectdb', db: this.db, raw: raw(), at };
      case OP_RESIZEDB: {
        const keys = c.plainLen();
        c.plainLen();
        return { kind: 'resizedb', db: this.db, keys, raw: raw(), at };
      }
      case OP_AUX: {
        const key = c.string().toString('utf8');
        const value = c.string().toString('utf8');
        return { kind: 'aux', key, value, raw: raw(), at };
      }
      case OP_MODULE_AUX:
        c.skipLen(); // module id
        c.skipLen(); // when opcode
        c.skipLen(); // when
        c.skipModuleValue();
        return { kind: 'module-aux', raw: raw(), at };
      case OP_FUNCTION2:
        c.skipString();
        return { kind: 'function', raw: raw(), at };
      case OP_FUNCTION_PRE_GA:
        throw c.bad('a pre-release Redis 7.0 function record, which Bunker does not read');
      default: {
        const type = op;
        if (this.countOnly) {
          // Backups of a whole instance only count keys: no key decoding, no event, no garbage.
          const keyStart = c.pos;
          c.skipString();
          if (type === 6 || type === 7) {
            c.pos = keyStart;
            skipValue(c, type, c.string());
          }
          skipValue(c, type, EMPTY);
          this.keysPerDb.set(this.db, (this.keysPerDb.get(this.db) ?? 0) + 1);
          return null;
        }
        const key = c.string();
        const valueStart = c.pos;
        skipValue(c, type, key);
        return { kind: 'key', db: this.db, key, expireMs, type, valueStart: valueStart - c.start, raw: raw(), at };
      }
    }
  }
}

/** The RESTORE payload for a value: encoded value, RDB version (2 bytes LE), CRC64 of both (8 bytes LE). */
export function restorePayload(value: Buffer, rdbVersion: number): Buffer {
  return restorePayloadOf(value[0]!, value, 1, rdbVersion);
}

/** The RESTORE payload for a key event: its type byte and raw.subarray(valueStart). */
export function restorePayloadOf(type: number, raw: Buffer, valueStart: number, rdbVersion: number): Buffer {
  const len = 1 + raw.length - valueStart;
  const out = Buffer.allocUnsafe(len + 10);
  out[0] = type;
  raw.copy(out, 1, valueStart);
  out.writeUInt16LE(rdbVersion, len);
  const crc = new Crc64().update(out.subarray(0, len + 2));
  out.writeUInt32LE(crc.lo, len + 2);
  out.writeUInt32LE(crc.hi, len + 6);
  return out;
}

