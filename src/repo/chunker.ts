// FastCDC content-defined chunking with normalized chunking (level 2), written for this project.
// A rolling gear hash h = (h << 1) + G[byte] is tested against a stricter mask before the average size
// and a looser one after it, which pulls chunk sizes towards the average. The gear table comes from a
// per-repository secret, so chunk boundaries (and thus chunk sizes) reveal nothing about content to
// someone without the key. The byte loop itself is C (scan() in native/bunker-codec.c, ~4× the JS
// loop); the size rules around it are here.
import { createHmac } from 'node:crypto';
import { codecAddon } from './native-codec.js';

export interface ChunkSizes {
  min: number;
  avg: number;
  max: number;
}

/** 512 KiB / 1 MiB / 8 MiB: large enough for few blobs per GB, small enough for fine-grained dedup. */
export const DEFAULT_CHUNK_SIZES: ChunkSizes = { min: 512 * 1024, avg: 1024 * 1024, max: 8 * 1024 * 1024 };

/** 256 pseudo-random 32-bit values from HMAC-SHA-256(key, "bunker-gear-" ‖ block). */
export function gearTable(key: Uint8Array): Int32Array {
  const bytes = Buffer.alloc(1024);
  for (let block = 0; block < 32; block++) {
    createHmac('sha256', key).update(`bunker-gear-${block}`).digest().copy(bytes, block * 32);
  }
  // Int32Array, not Uint32Array: values stay small integers in V8, which keeps the hot loop in int32 arithmetic.
  const table = new Int32Array(256);
  for (let i = 0; i < 256; i++) table[i] = bytes.readInt32LE(i * 4);
  return table;
}

/** A mask of the `bits` highest bits: with a left-shifting hash, the high bits depend on the most bytes. */
function highBits(bits: number): number {
  return bits <= 0 ? 0 : (0xffffffff << (32 - bits)) | 0;
}

export function validateChunkSizes(s: ChunkSizes): void {
  const pow2 = (n: number) => Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0;
  if (!(pow2(s.avg) && s.min >= 64 && s.min < s.avg && s.avg < s.max && s.max <= 64 * 1024 * 1024)) {
    throw new Error(`invalid chunk sizes ${JSON.stringify(s)}: need 64 ≤ min < avg < max ≤ 64 MiB, avg a power of two`);
  }
}

/**
 * A finished chunk as the input pieces it spans, in order: views of the pushed buffers, not a copy
 * (the codec hashes the pieces as they are and joins them only to seal a chunk that is new).
 */
export interface Chunk {
  pieces: Buffer[];
  length: number;
}

/** Streaming chunker: push() input pieces of any size, collect the finished chunks, finish() the tail. */
export class Chunker {
  private readonly gear: Int32Array;
  private readonly maskS: number;
  private readonly maskL: number;
  private pending: Buffer[] = [];
  private pendingLen = 0;
  /** The rolling hash, carried across push() calls (an Int32Array: the native scan reads and updates it). */
  private readonly hash = new Int32Array(1);
  private readonly scan = codecAddon().scan;

  constructor(gear: Int32Array, private readonly sizes: ChunkSizes = DEFAULT_CHUNK_SIZES) {
    validateChunkSizes(sizes);
    this.gear = gear;
    const bits = Math.round(Math.log2(sizes.avg));
    this.maskS = highBits(bits + 2);
    this.maskL = highBits(bits - 2);
  }

  /**
   * Returns the chunks completed by `data`; the rest is kept for the next push() or finish(). The
   * chunks are views of `data` and earlier pushes, which must therefore not be changed afterwards.
   */
  push(data: Buffer): Chunk[] {
    const out: Chunk[] = [];
    const { min, avg, max } = this.sizes;
    const G = this.gear;
    const n = data.length;
    const scan = this.scan;
    const h = this.hash;
    let start = 0; // where the current chunk's bytes begin within `data`
    let i = 0;
    while (i < n) {
      const pos = this.pendingLen + (i - start); // bytes of the current chunk before data[i]
      let cut = -1;
      if (pos < min) {
        // The first `min` bytes of a chunk are never a boundary: skip them without hashing.
        i += Math.min(min - pos, n - i);
        continue;
      }
      if (pos < avg) {
        const stop = Math.min(n, i + (avg - pos));
        cut = scan(data, i, stop, this.maskS, G, h);
        i = cut >= 0 ? cut : stop;
      } else {
        const stop = Math.min(n, i + (max - pos));
        cut = scan(data, i, stop, this.maskL, G, h);
        i = cut >= 0 ? cut : stop;
        if (cut < 0 && this.pendingLen + (i - start) >= max) cut = i;
      }
      if (cut >= 0) {
        out.push(this.take(data, start, cut));
        start = cut;
        h[0] = 0;
      }
    }
    if (start < n) {
      this.pending.push(data.subarray(start));
      this.pendingLen += n - start;
    }
    return out;
  }

  /** The last, possibly short, chunk; null when nothing is left. */
  finish(): Chunk | null {
    if (this.pendingLen === 0) return null;
    const chunk = { pieces: this.pending, length: this.pendingLen };
    this.pending = [];
    this.pendingLen = 0;
    this.hash[0] = 0;
    return chunk;
  }

  private take(data: Buffer, start: number, end: number): Chunk {
    const pieces = this.pending;
    pieces.push(data.subarray(start, end));
    const chunk = { pieces, length: this.pendingLen + (end - start) };
    this.pending = [];
    this.pendingLen = 0;
    return chunk;
  }
}

/** Chunks a whole buffer at once (for tests and small inputs). */
export function chunkBuffer(gear: Int32Array, data: Buffer, sizes: ChunkSizes = DEFAULT_CHUNK_SIZES): Buffer[] {
  const c = new Chunker(gear, sizes);
  const out = c.push(data);
  const last = c.finish();
  if (last) out.push(last);
  return out.map((chunk) => Buffer.concat(chunk.pieces, chunk.length));
}
