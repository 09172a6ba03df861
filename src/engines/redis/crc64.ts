// CRC-64/Jones (reflected, poly 0xad93d23594c935a9, init 0), the checksum Redis puts after every RDB
// file and every DUMP/RESTORE payload. JavaScript has no fast 64-bit integers (BigInt per byte would be
// far too slow for hundreds of megabytes), so the CRC is kept as two 32-bit halves and computed
// slice-by-16 over aligned 32-bit words for long inputs (16 table lookups per 16 bytes), slice-by-8
// with byte loads for short ones.

const REFLECTED_POLY_HI = 0x95ac9329;
const REFLECTED_POLY_LO = 0xac4bc9b5;

// Tables k = 0..15, each 256 entries; hi and lo halves stored separately. Int32Array keeps the values
// small integers in V8, so the hot loop stays in int32 arithmetic.
const HI = new Int32Array(16 * 256);
const LO = new Int32Array(16 * 256);

for (let i = 0; i < 256; i++) {
  let hi = 0;
  let lo = i;
  for (let bit = 0; bit < 8; bit++) {
    const carry = lo & 1;
    lo = (lo >>> 1) | ((hi & 1) << 31);
    hi = hi >>> 1;
    if (carry) {
      hi ^= REFLECTED_POLY_HI;
      lo ^= REFLECTED_POLY_LO;
    }
  }
  HI[i] = hi;
  LO[i] = lo;
}
for (let k = 1; k < 16; k++) {
  for (let i = 0; i < 256; i++) {
    const ph = HI[(k - 1) * 256 + i]!;
    const pl = LO[(k - 1) * 256 + i]!;
    const t = pl & 0xff;
    HI[k * 256 + i] = HI[t]! ^ (ph >>> 8);
    LO[k * 256 + i] = LO[t]! ^ ((pl >>> 8) | (ph << 24));
  }
}

/** Word reads assume little-endian memory; elsewhere every input takes the byte loop. */
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
/** Below this a 32-bit view costs more than it saves (RESTORE payloads are mostly far smaller). */
const WIDE_MIN = 4096;

/**
 * Slice-by-8 with byte loads from data[i, end), then the last bytes one by one; leaves the result in
 * STATE_HI/STATE_LO. Used for short inputs, and around the word-aligned middle of long ones.
 */
function narrow(data: Uint8Array, i: number, end: number, hi: number, lo: number): void {
  const end8 = end - ((end - i) % 8);
  while (i < end8) {
    const l = lo ^ (data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24));
    const h = hi ^ (data[i + 4]! | (data[i + 5]! << 8) | (data[i + 6]! << 16) | (data[i + 7]! << 24));
    const a = 1792 + (l & 0xff);
    const b = 1536 + ((l >>> 8) & 0xff);
    const c = 1280 + ((l >>> 16) & 0xff);
    const d = 1024 + (l >>> 24);
    const e = 768 + (h & 0xff);
    const f = 512 + ((h >>> 8) & 0xff);
    const g = 256 + ((h >>> 16) & 0xff);
    const k = h >>> 24;
    lo = LO[a]! ^ LO[b]! ^ LO[c]! ^ LO[d]! ^ LO[e]! ^ LO[f]! ^ LO[g]! ^ LO[k]!;
    hi = HI[a]! ^ HI[b]! ^ HI[c]! ^ HI[d]! ^ HI[e]! ^ HI[f]! ^ HI[g]! ^ HI[k]!;
    i += 8;
  }
  while (i < end) {
    const t = (lo ^ data[i]!) & 0xff;
    lo = LO[t]! ^ ((lo >>> 8) | (hi << 24));
    hi = HI[t]! ^ (hi >>> 8);
    i++;
  }
  STATE_HI = hi;
  STATE_LO = lo;
}
// Results of narrow()/wide(): two numbers without allocating a pair per call.
let STATE_HI = 0;
let STATE_LO = 0;

/** Slice-by-16 over 32-bit words; `words` holds whole groups of four (16 bytes). */
function wide(words: Int32Array, hi: number, lo: number): void {
  const n = words.length;
  for (let w = 0; w < n; w += 4) {
    const a = lo ^ words[w]!;
    const b = hi ^ words[w + 1]!;
    const c = words[w + 2]!;
    const d = words[w + 3]!;
    const i0 = 3840 + (a & 0xff);
    const i1 = 3584 + ((a >>> 8) & 0xff);
    const i2 = 3328 + ((a >>> 16) & 0xff);
    const i3 = 3072 + (a >>> 24);
    const i4 = 2816 + (b & 0xff);
    const i5 = 2560 + ((b >>> 8) & 0xff);
    const i6 = 2304 + ((b >>> 16) & 0xff);
    const i7 = 2048 + (b >>> 24);
    const i8 = 1792 + (c & 0xff);
    const i9 = 1536 + ((c >>> 8) & 0xff);
    const i10 = 1280 + ((c >>> 16) & 0xff);
    const i11 = 1024 + (c >>> 24);
    const i12 = 768 + (d & 0xff);
    const i13 = 512 + ((d >>> 8) & 0xff);
    const i14 = 256 + ((d >>> 16) & 0xff);
    const i15 = d >>> 24;
    lo =
      LO[i0]! ^ LO[i1]! ^ LO[i2]! ^ LO[i3]! ^ LO[i4]! ^ LO[i5]! ^ LO[i6]! ^ LO[i7]! ^
      LO[i8]! ^ LO[i9]! ^ LO[i10]! ^ LO[i11]! ^ LO[i12]! ^ LO[i13]! ^ LO[i14]! ^ LO[i15]!;
    hi =
      HI[i0]! ^ HI[i1]! ^ HI[i2]! ^ HI[i3]! ^ HI[i4]! ^ HI[i5]! ^ HI[i6]! ^ HI[i7]! ^
      HI[i8]! ^ HI[i9]! ^ HI[i10]! ^ HI[i11]! ^ HI[i12]! ^ HI[i13]! ^ HI[i14]! ^ HI[i15]!;
  }
  STATE_HI = hi;
  STATE_LO = lo;
}

/** A running CRC-64 as two unsigned 32-bit halves. */
export class Crc64 {
  hi = 0;
  lo = 0;

  update(data: Uint8Array): this {
    const n = data.length;
    if (n < WIDE_MIN || !LITTLE_ENDIAN) {
      narrow(data, 0, n, this.hi, this.lo);
    } else {
      // Bytes up to a 4-byte boundary, whole 16-byte groups as words, then the rest.
      const head = (4 - (data.byteOffset & 3)) & 3;
      narrow(data, 0, head, this.hi, this.lo);
      const groups = (n - head) >>> 4;
      wide(new Int32Array(data.buffer, data.byteOffset + head, groups * 4), STATE_HI, STATE_LO);
      narrow(data, head + groups * 16, n, STATE_HI, STATE_LO);
    }
    this.hi = STATE_HI >>> 0;
    this.lo = STATE_LO >>> 0;
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
