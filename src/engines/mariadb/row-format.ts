// The data stream format: the text LOAD DATA reads with
//   CHARACTER SET binary FIELDS TERMINATED BY '\t' ESCAPED BY '\\' LINES TERMINATED BY '\n'
// one row per line, values as the server's text protocol sends them (raw bytes in the column's own
// character set, so nothing is converted either way), NULL as \N. Rows follow the primary key, so an
// unchanged table yields the same bytes and the repository's content-defined chunks deduplicate.

export const LOAD_DATA_FORMAT = "CHARACTER SET binary FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n'";

const TAB = 0x09;
const NL = 0x0a;
const BACKSLASH = 0x5c;
const N = 0x4e;

/** Packs rows into buffers of about `blockSize` bytes. */
export class RowEncoder {
  private buf: Buffer;
  private pos = 0;
  bytes = 0;
  rows = 0;
  /**
   * For pushPacket(): the input buffer last scanned, and the next position in it of a tab, a newline
   * and a backslash at or after where the scan got to (-1: not looked for yet; length: none left).
   * One native search per special byte over a whole network chunk, instead of three per value.
   */
  private scanned: Buffer | undefined;
  /** `scanned` as a plain Uint8Array: its subarray() is cheaper than Buffer's copy() for short runs. */
  private scannedBytes: Uint8Array<ArrayBufferLike> = new Uint8Array(0);
  private scannedTo = 0;
  private nextTab = -1;
  private nextNl = -1;
  private nextBs = -1;

  constructor(private readonly blockSize = 1 << 20) {
    this.buf = this.fresh();
  }

  /**
   * A block's buffer. pushPacket() hands a block over before a row could overrun it, so a block
   * allocates no more than it holds (V8 counts every external byte towards its next full GC).
   */
  private fresh(): Buffer {
    return Buffer.allocUnsafe(this.blockSize);
  }

  private ensure(extra: number): void {
    if (this.pos + extra <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + extra));
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  /** Appends one row; returns a full block to write when one is ready. */
  push(values: ReadonlyArray<Buffer | null>): Buffer | null {
    for (let i = 0; i < values.length; i++) {
      const v = values[i];
      if (i > 0) {
        this.ensure(1);
        this.buf[this.pos++] = TAB;
      }
      if (v === null || v === undefined) {
        this.ensure(2);
        this.buf[this.pos++] = BACKSLASH;
        this.buf[this.pos++] = N;
        continue;
      }
      // Worst case every byte doubles when escaped.
      this.ensure(v.length * 2);
      const buf = this.buf;
      let pos = this.pos;
      // Longer values rarely need escaping: three native scans and one copy beat a byte loop.
      if (v.length >= 16 && v.indexOf(BACKSLASH) === -1 && v.indexOf(TAB) === -1 && v.indexOf(NL) === -1) {
        this.pos = pos + v.copy(buf, pos);
        continue;
      }
      for (let j = 0; j < v.length; j++) {
        const b = v[j]!;
        if (b === BACKSLASH || b === TAB || b === NL) {
          buf[pos++] = BACKSLASH;
          buf[pos++] = b === TAB ? 0x74 /* t */ : b === NL ? 0x6e /* n */ : BACKSLASH;
        } else {
          buf[pos++] = b;
        }
      }
      this.pos = pos;
    }
    this.ensure(1);
    this.buf[this.pos++] = NL;
    this.rows++;
    return this.pos >= this.blockSize ? this.take() : null;
  }

  /**
   * Appends one row straight from a text-protocol result row packet: `data[start, end)` is its
   * payload, each value length-encoded (0xfb for NULL). No per-value objects; values without a
   * byte to escape are copied as they are. Returns a full block to write when one is ready.
   */
  pushPacket(data: Buffer, start: number, end: number): Buffer | null {
    if (data !== this.scanned || start < this.scannedTo) {
      // Another buffer, or this one again from an earlier position: forget the cursors.
      this.scanned = data;
      this.scannedBytes = new Uint8Array(data.buffer, data.byteOffset, data.length);
      this.nextTab = this.nextNl = this.nextBs = -1;
    }
    this.scannedTo = end;
    // Worst case 3 bytes of text per packet byte: a NULL (1 byte) becomes \N and a tab. A row that
    // might not fit hands the block over first (and a row larger than a block gets its own).
    const need = 3 * (end - start) + 1;
    let full: Buffer | null = null;
    if (this.pos + need > this.buf.length) {
      if (this.pos > 0) full = this.take();
      if (need > this.buf.length) this.buf = Buffer.allocUnsafe(need);
    }
    const out = this.buf;
    const base = this.pos;
    // Common case first: every value shorter than 251 bytes (a one-byte length), none NULL, none
    // holding a byte to escape. Then the text is the payload with each length byte turned into a
    // tab (the first dropped): one native copy per row, a few byte writes.
    let p = start;
    let clean = true;
    while (p < end) {
      const len = data[p]!;
      if (len >= 0xfb) {
        clean = false;
        break;
      }
      const from = p + 1;
      const stop = from + len;
      if (this.nextTab < from) this.nextTab = indexFrom(data, TAB, from);
      if (this.nextNl < from) this.nextNl = indexFrom(data, NL, from);
      if (this.nextBs < from) this.nextBs = indexFrom(data, BACKSLASH, from);
      if (this.nextTab < stop || this.nextNl < stop || this.nextBs < stop) {
        clean = false;
        break;
      }
      p = stop;
    }
    if (clean && start < end) {
      const from = start + 1;
      const n = end - from;
      // A native copy costs about as much as a JS loop over ~40 bytes.
      if (n > 24) out.set(this.scannedBytes.subarray(from, end), base);
      else for (let j = 0; j < n; j++) out[base + j] = data[from + j]!;
      for (let q = from + data[start]!; q < end; q += data[q]! + 1) out[base + q - from] = TAB;
      this.pos = base + n;
      out[this.pos++] = NL;
      this.rows++;
    } else {
      this.pushSlow(data, start, end);
    }
    return full ?? (this.pos >= this.blockSize ? this.take() : null);
  }

  /** pushPacket() for rows with NULLs, long values or bytes to escape (the room is there). */
  private pushSlow(data: Buffer, start: number, end: number): void {
    const out = this.buf;
    let pos = this.pos;
    let p = start;
    let first = true;
    while (p < end) {
      if (!first) out[pos++] = TAB;
      first = false;
      let len = data[p++]!;
      if (len === 0xfb) {
        out[pos++] = BACKSLASH;
        out[pos++] = N;
        continue;
      }
      if (len === 0xfc) {
        len = data[p]! | (data[p + 1]! << 8);
        p += 2;
      } else if (len === 0xfd) {
        len = data[p]! | (data[p + 1]! << 8) | (data[p + 2]! << 16);
        p += 3;
      } else if (len === 0xfe) {
        len = data.readUInt32LE(p) + data.readUInt32LE(p + 4) * 0x1_0000_0000;
        p += 8;
      }
      const stop = p + len;
      if (stop > end) throw new Error(`malformed row packet: a value of ${len} bytes runs past the packet's end`);
      if (this.nextTab < p) this.nextTab = indexFrom(data, TAB, p);
      if (this.nextNl < p) this.nextNl = indexFrom(data, NL, p);
      if (this.nextBs < p) this.nextBs = indexFrom(data, BACKSLASH, p);
      if (this.nextTab >= stop && this.nextNl >= stop && this.nextBs >= stop) {
        if (len > 24) {
          out.set(this.scannedBytes.subarray(p, stop), pos);
          pos += len;
        } else for (let j = p; j < stop; j++) out[pos++] = data[j]!;
      } else {
        for (let j = p; j < stop; j++) {
          const b = data[j]!;
          if (b === BACKSLASH || b === TAB || b === NL) {
            out[pos++] = BACKSLASH;
            out[pos++] = b === TAB ? 0x74 /* t */ : b === NL ? 0x6e /* n */ : BACKSLASH;
          } else {
            out[pos++] = b;
          }
        }
      }
      p = stop;
    }
    out[pos++] = NL;
    this.pos = pos;
    this.rows++;
  }

  /** Whatever is buffered (possibly empty). */
  take(): Buffer {
    if (this.pos === 0) return Buffer.alloc(0);
    // The block is handed over, not copied: the caller's writer may keep it.
    const out = this.buf.subarray(0, this.pos);
    this.buf = this.fresh();
    this.bytes += out.length;
    this.pos = 0;
    return out;
  }
}

/** Position of `byte` in `data` at or after `from`, or data.length when there is none. */
function indexFrom(data: Buffer, byte: number, from: number): number {
  const i = data.indexOf(byte, from);
  return i === -1 ? data.length : i;
}
