// CRC-64/Jones (reflected, poly 0xad93d23594c935a9, init 0), the checksum Redis puts after every RDB
// file and every DUMP/RESTORE payload. JavaScript has no fast 64-bit integers (BigInt per byte would be
// far too slow for hundreds of megabytes), so the CRC is kept as two 32-bit halves. Long inputs (a
// backup's whole RDB) go through a small WebAssembly function with native 64-bit loads and no bounds
// checks, slice-by-16 (about 1.5x the JavaScript loop, copying included); without WebAssembly they take
// slice-by-16 over aligned 32-bit words in JavaScript. Short ones (RESTORE payloads) take slice-by-8
// with byte loads.

// Node has WebAssembly; the TypeScript libs this project builds with (no DOM) do not declare it.
declare const WebAssembly: {
  Memory: new (descriptor: { initial: number }) => { buffer: ArrayBuffer };
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: Record<string, unknown> };
};

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

// ---------- the WebAssembly version of wide() ----------
// Memory: the 16 tables as little-endian i64 (32 KiB) at 0, the CRC state (i64) at STATE, the input
// copied to INPUT in pieces of at most INPUT_BYTES. One function u(ptr, len) folds mem[ptr, ptr+len)
// into the state: 16 bytes per round as two i64 loads, then the last bytes one at a time.
const WASM_STATE = 32768;
const WASM_INPUT = 65536;
const WASM_INPUT_BYTES = 1 << 20;

function wasmModuleBytes(): Uint8Array {
  const uleb = (n: number): number[] => {
    const out: number[] = [];
    do {
      let b = n & 0x7f;
      n >>>= 7;
      if (n) b |= 0x80;
      out.push(b);
    } while (n);
    return out;
  };
  const sleb = (n: number): number[] => {
    const out: number[] = [];
    for (;;) {
      const b = n & 0x7f;
      n >>= 7;
      if ((n === 0 && !(b & 0x40)) || (n === -1 && b & 0x40)) return [...out, b];
      out.push(b | 0x80);
    }
  };
  const vec = (items: number[][]): number[] => [...uleb(items.length), ...items.flat()];
  const name = (text: string): number[] => [...uleb(text.length), ...Buffer.from(text, 'latin1')];
  const section = (id: number, bytes: number[]): number[] => [id, ...uleb(bytes.length), ...bytes];
  const memarg = (align: number, offset: number) => [...uleb(align), ...uleb(offset)];
  // Opcodes used below.
  const BLOCK = 0x02, LOOP = 0x03, BR = 0x0c, BR_IF = 0x0d, END = 0x0b, VOID = 0x40;
  const GET = 0x20, SET = 0x21, I32_CONST = 0x41, I64_CONST = 0x42;
  const I64_LOAD = 0x29, I64_LOAD8_U = 0x31, I64_STORE = 0x37;
  const I32_ADD = 0x6a, I32_AND = 0x71, I32_SHL = 0x74, I32_GE_U = 0x4f;
  const I64_XOR = 0x85, I64_SHR_U = 0x88, I32_WRAP_I64 = 0xa7;
  // Locals: 0 ptr, 1 len (params), 2 end (i32), 3 crc, 4 a, 5 b (i64).
  const [PTR, LEN, ENDP, CRC, A, B] = [0, 1, 2, 3, 4, 5];
  const code: number[] = [];
  const emit = (...ops: number[]) => code.push(...ops);
  /** Pushes table[k][byte j of local v]: an i64 load at k*2048 + 8*byte. */
  const lookup = (v: number, j: number, k: number) => {
    emit(GET, v);
    if (j) emit(I64_CONST, ...sleb(8 * j), I64_SHR_U);
    emit(I32_WRAP_I64, I32_CONST, ...sleb(255), I32_AND, I32_CONST, 3, I32_SHL, I64_LOAD, ...memarg(3, k * 2048));
  };
  emit(I32_CONST, 0, I64_LOAD, ...memarg(3, WASM_STATE), SET, CRC);
  emit(GET, PTR, GET, LEN, I32_CONST, ...sleb(-16), I32_AND, I32_ADD, SET, ENDP); // end of the 16-byte rounds
  emit(BLOCK, VOID, LOOP, VOID);
  emit(GET, PTR, GET, ENDP, I32_GE_U, BR_IF, 1);
  emit(GET, PTR, I64_LOAD, ...memarg(0, 0), GET, CRC, I64_XOR, SET, A);
  emit(GET, PTR, I64_LOAD, ...memarg(0, 8), SET, B);
  for (let j = 0; j < 8; j++) {
    lookup(A, j, 15 - j);
    if (j) emit(I64_XOR);
  }
  for (let j = 0; j < 8; j++) {
    lookup(B, j, 7 - j);
    emit(I64_XOR);
  }
  emit(SET, CRC, GET, PTR, I32_CONST, 16, I32_ADD, SET, PTR, BR, 0, END, END);
  emit(GET, ENDP, GET, LEN, I32_CONST, 15, I32_AND, I32_ADD, SET, ENDP); // end of the input
  emit(BLOCK, VOID, LOOP, VOID);
  emit(GET, PTR, GET, ENDP, I32_GE_U, BR_IF, 1);
  // crc = T0[(crc ^ byte) & 255] ^ (crc >> 8)
  emit(GET, CRC, GET, PTR, I64_LOAD8_U, ...memarg(0, 0), I64_XOR, I32_WRAP_I64, I32_CONST, ...sleb(255), I32_AND);
  emit(I32_CONST, 3, I32_SHL, I64_LOAD, ...memarg(3, 0), GET, CRC, I64_CONST, 8, I64_SHR_U, I64_XOR, SET, CRC);
  emit(GET, PTR, I32_CONST, 1, I32_ADD, SET, PTR, BR, 0, END, END);
  emit(I32_CONST, 0, GET, CRC, I64_STORE, ...memarg(3, WASM_STATE), END);
  const body = [...vec([[1, 0x7f], [3, 0x7e]]), ...code];
  return new Uint8Array([
    ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00],
    ...section(1, vec([[0x60, ...vec([[0x7f], [0x7f]]), 0]])), // type 0: (i32, i32) -> ()
    ...section(2, vec([[...name('e'), ...name('m'), 0x02, 0x00, ...uleb(1)]])), // import memory e.m
    ...section(3, vec([[0]])), // function 0 has type 0
    ...section(7, vec([[...name('u'), 0x00, 0]])), // export it as u
    ...section(10, vec([[...uleb(body.length), ...body]])),
  ]);
}

interface WasmCrc {
  bytes: Uint8Array;
  state: Int32Array;
  update: (ptr: number, len: number) => void;
}

/** The WebAssembly CRC, or null where WebAssembly is not available (then JavaScript does it all). */
const WASM: WasmCrc | null = (() => {
  if (!LITTLE_ENDIAN || typeof WebAssembly === 'undefined') return null;
  try {
    const memory = new WebAssembly.Memory({ initial: (WASM_INPUT + WASM_INPUT_BYTES) / 65536 });
    const instance = new WebAssembly.Instance(new WebAssembly.Module(wasmModuleBytes()), { e: { m: memory } });
    const tables = new Int32Array(memory.buffer, 0, 16 * 256 * 2);
    for (let i = 0; i < 16 * 256; i++) {
      tables[2 * i] = LO[i]!;
      tables[2 * i + 1] = HI[i]!;
    }
    return {
      bytes: new Uint8Array(memory.buffer),
      state: new Int32Array(memory.buffer, WASM_STATE, 2),
      update: instance.exports.u as (ptr: number, len: number) => void,
    };
  } catch {
    return null;
  }
})();

/** A running CRC-64 as two unsigned 32-bit halves. */
export class Crc64 {
  hi = 0;
  lo = 0;

  update(data: Uint8Array): this {
    return this.fold(data, WASM);
  }

  /** update() without WebAssembly: what runs where it is missing (for tests). */
  updatePortable(data: Uint8Array): this {
    return this.fold(data, null);
  }

  private fold(data: Uint8Array, wasm: WasmCrc | null): this {
    const n = data.length;
    if (n < WIDE_MIN || !LITTLE_ENDIAN) {
      narrow(data, 0, n, this.hi, this.lo);
    } else if (wasm) {
      wasm.state[0] = this.lo;
      wasm.state[1] = this.hi;
      for (let from = 0; from < n; from += WASM_INPUT_BYTES) {
        const part = data.subarray(from, from + WASM_INPUT_BYTES);
        wasm.bytes.set(part, WASM_INPUT);
        wasm.update(WASM_INPUT, part.length);
      }
      STATE_LO = wasm.state[0]!;
      STATE_HI = wasm.state[1]!;
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

/** Whether long inputs take the WebAssembly path here. */
export const CRC64_WASM = WASM !== null;

export function crc64(data: Uint8Array): Crc64 {
  return new Crc64().update(data);
}
