// CRC-64/Jones (reflected, poly 0xad93d23594c935a9, init 0), the checksum Redis puts after every RDB
// file and every DUMP/RESTORE payload. Slice-by-8 over two 32-bit halves: JavaScript has no fast
// 64-bit integers, and BigInt per byte would be far too slow for hundreds of megabytes.

const REFLECTED_POLY_HI = 0x95ac9329;
const REFLECTED_POLY_LO = 0xac4bc9b5;

// Tables k = 0..7, each 256 entries; hi and lo halves stored separately.
const HI = new Uint32Array(8 * 256);
const LO = new Uint32Array(8 * 256);

for (let i = 0; i < 256; i++) {
  let hi = 0;
  let lo = i;
  for (let bit = 0; bit < 8; bit++) {
    const carry = lo & 1;
    lo = ((lo >>> 1) | ((hi & 1) << 31)) >>> 0;
    hi = hi >>> 1;
    if (carry) {
      hi = (hi ^ REFLECTED_POLY_HI) >>> 0;
      lo = (lo ^ REFLECTED_POLY_LO) >>> 0;
    }
  }
  HI[i] = hi;
  LO[i] = lo;
}
for (let k = 1; k < 8; k++) {
  for (let i = 0; i < 256; i++) {
    const ph = HI[(k - 1) * 256 + i]!;
    const pl = LO[(k - 1) * 256 + i]!;
    const t = pl & 0xff;
    HI[k * 256 + i] = (HI[t]! ^ (ph >>> 8)) >>> 0;
    LO[k * 256 + i] = (LO[t]! ^ ((pl >>> 8) | (ph << 24))) >>> 0;
  }
}

/** A running CRC-64 as two unsigned 32-bit halves. */
export class Crc64 {
  hi = 0;
  lo = 0;

  update(data: Uint8Array): this {
    let hi = this.hi;
    let lo = this.lo;
    let i = 0;
    const n = data.length;
    const end8 = n - (n % 8);
    while (i < end8) {
      const l = lo ^ (data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24));
      const h = hi ^ (data[i + 4]! | (data[i + 5]! << 8) | (data[i + 6]! << 16) | (data[i + 7]! << 24));
      const a = 7 * 256 + (l & 0xff);
      const b = 6 * 256 + ((l >>> 8) & 0xff);
      const c = 5 * 256 + ((l >>> 16) & 0xff);
      const d = 4 * 256 + (l >>> 24);
      const e = 3 * 256 + (h & 0xff);
      const f = 2 * 256 + ((h >>> 8) & 0xff);
      const g = 256 + ((h >>> 16) & 0xff);
      const k = h >>> 24;
      lo = LO[a]! ^ LO[b]! ^ LO[c]! ^ LO[d]! ^ LO[e]! ^ LO[f]! ^ LO[g]! ^ LO[k]!;
      hi = HI[a]! ^ HI[b]! ^ HI[c]! ^ HI[d]! ^ HI[e]! ^ HI[f]! ^ HI[g]! ^ HI[k]!;
      i += 8;
    }
    while (i < n) {
      const t = (lo ^ data[i]!) & 0xff;
      lo = LO[t]! ^ ((lo >>> 8) | (hi << 24));
      hi = HI[t]! ^ (hi >>> 8);
      i++;
    }
    this.hi = hi >>> 0;
    this.lo = lo >>> 0;
    return this;
  }

  /** The 8 bytes Redis writes: the CRC in little-endian order. */
  toBufferLE(): Buffer {
    const out = Buffer.alloc(8);
    out.writeUInt32LE(this.lo, 0);
    out.writeUInt32LE(this.hi, 4);
    return out;
  }

  /** True when `bytes` (8, little-endian) hold this CRC. */
  equalsLE(bytes: Uint8Array, offset = 0): boolean {
    const view = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    return view.readUInt32LE(offset) === this.lo && view.readUInt32LE(offset + 4) === this.hi;
  }

  toHex(): string {
    return this.hi.toString(16).padStart(8, '0') + this.lo.toString(16).padStart(8, '0');
  }
}

export function crc64(data: Uint8Array): Crc64 {
  return new Crc64().update(data);
}
