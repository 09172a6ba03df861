// CRC-64/Jones (reflected, poly 0xad93d23594c935a9, init 0), the checksum Redis puts after every RDB
// file and every DUMP/RESTORE payload. Long inputs (a backup's whole RDB, in blocks) go to the C addon
// (slice-by-16 on 64-bit words, native/bunker-codec.c); short ones (RESTORE payloads, mostly tiny) stay
// in JavaScript, where a call into the addon would cost more than the CRC. JavaScript has no fast
// 64-bit integers, so there the CRC is kept as two 32-bit halves.
import { codecAddon } from '../../repo/native-codec.js';

const REFLECTED_POLY_HI = 0x95ac9329;
const REFLECTED_POLY_LO = 0xac4bc9b5;

// Tables k = 0..7, each 256 entries; hi and lo halves stored separately. Int32Array keeps the values
// small integers in V8, so the hot loop stays in int32 arithmetic.
const HI = new Int32Array(8 * 256);
const LO = new Int32Array(8 * 256);

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
for (let k = 1; k < 8; k++) {
  for (let i = 0; i < 256; i++) {
    const ph = HI[(k - 1) * 256 + i]!;
    const pl = LO[(k - 1) * 256 + i]!;
    const t = pl & 0xff;
    HI[k * 256 + i] = HI[t]! ^ (ph >>> 8);
    LO[k * 256 + i] = LO[t]! ^ ((pl >>> 8) | (ph << 24));
  }
}

/** From this length on the addon is cheaper than the JavaScript loop, call included. */
const NATIVE_MIN = 4096;

/**
 * Slice-by-8 with byte loads, then the last bytes one by one; leaves the result in STATE_HI/STATE_LO.
 */
function narrow(data: Uint8Array, hi: number, lo: number): void {
  const end = data.length;
  let i = 0;
  const end8 = end - (end % 8);
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
// Results of narrow(): two numbers without allocating a pair per call.
let STATE_HI = 0;
let STATE_LO = 0;

/** [low, high] halves handed to and back from the addon. */
const NATIVE_STATE = new Int32Array(2);

/** A running CRC-64 as two unsigned 32-bit halves. */
export class Crc64 {
  hi = 0;
  lo = 0;

  update(data: Uint8Array): this {
    if (data.length < NATIVE_MIN) {
      narrow(data, this.hi, this.lo);
      this.hi = STATE_HI >>> 0;
      this.lo = STATE_LO >>> 0;
    } else {
      NATIVE_STATE[0] = this.lo;
      NATIVE_STATE[1] = this.hi;
      codecAddon().crc64(NATIVE_STATE, data);
      this.lo = NATIVE_STATE[0]! >>> 0;
      this.hi = NATIVE_STATE[1]! >>> 0;
    }
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
