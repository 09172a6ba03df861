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

  constructor(private readonly blockSize = 1 << 20) {
    this.buf = Buffer.allocUnsafe(blockSize * 2);
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

  /** Whatever is buffered (possibly empty). */
  take(): Buffer {
    const out = Buffer.from(this.buf.subarray(0, this.pos));
    this.bytes += out.length;
    this.pos = 0;
    return out;
  }
}
