// The repository's per-byte work, done by the C addon native/bunker-codec.c (built by `npm ci` through
// the root binding.gyp): the chunker's gear scan, blob ids, and sealing/opening blobs on libuv's
// thread pool. Blob format: nonce(12) ‖ AES-256-GCM(flag ‖ payload) ‖ tag(16), flag 0 raw, 1 zstd,
// with the blob's id as associated data from format 3 on; chunks whose samples don't shrink by 3 % at
// zstd level 1 are stored raw without trying the rest.
import { availableParallelism } from 'node:os';
import { BunkerError } from '../core/index.js';
import { loadNativeAddon } from '../core/native-addon.js';
import { corrupt } from './crypto.js';

/** A blob's bytes: one buffer, or the pieces it spans in order (joined, when needed, on the pool). */
export type Input = Uint8Array | readonly Uint8Array[];

function byteLength(data: Input): number {
  if (!Array.isArray(data)) return (data as Uint8Array).length;
  let n = 0;
  for (const piece of data as readonly Uint8Array[]) n += piece.length;
  return n;
}

function asParts(data: Input): readonly Uint8Array[] {
  return Array.isArray(data) ? (data as readonly Uint8Array[]) : [data as Uint8Array];
}

interface HashRequest {
  data: Input;
  resolve: (id: string) => void;
  reject: (err: unknown) => void;
}

/** Opaque handle to copies of the encryption and id keys, held in C memory. */
type KeysHandle = { readonly __keys: unique symbol };

interface CodecAddon {
  keys(encKey: Buffer, idKey: Buffer): KeysHandle;
  scan(data: Uint8Array, from: number, stop: number, mask: number, gear: Int32Array, state: Int32Array): number;
  hash(keys: KeysHandle, data: Input): Promise<string>;
  /** The ids of two blobs: parts[0, split) are the first, the rest the second. */
  hash2(keys: KeysHandle, parts: readonly Uint8Array[], split: number): Promise<[string, string]>;
  hashSync(keys: KeysHandle, data: Input): string;
  /** boundId: the blob's hex id, authenticated as GCM associated data (format 3). */
  seal(keys: KeysHandle, data: Input, level: number, boundId?: string | null): Promise<SealResult>;
  /** Fails unless boundId is the id the blob was sealed with (none for formats 1 and 2); `id` only when hashPlain. */
  open(keys: KeysHandle, sealed: Uint8Array, plainLength: number, boundId?: string | null, hashPlain?: boolean): Promise<OpenResult>;
  /** open() decrypting over `sealed`; a raw blob's plaintext comes back as where it lies in `sealed`. */
  openInPlace(
    keys: KeysHandle,
    sealed: Uint8Array,
    plainLength: number,
    boundId?: string | null,
    hashPlain?: boolean,
  ): Promise<OpenResult | { offset: number; length: number; id?: string }>;
  /**
   * Opens the blobs lying in `sealed` (decrypted over) into `out`: layout holds each blob's [offset in
   * sealed, sealed length, plaintext length, offset in out], ids its 32-byte id. Bound: the ids are the
   * blobs' associated data (format 3); else their HMAC ids are recomputed and compared. Errors carry
   * `index` (the blob) and `mismatch` (it opened but is another blob).
   */
  openRun(keys: KeysHandle, sealed: Uint8Array, layout: Uint32Array, ids: Uint8Array, bound: boolean, out: Uint8Array): Promise<void>;
  openRunSync(keys: KeysHandle, sealed: Uint8Array, layout: Uint32Array, ids: Uint8Array, bound: boolean, out: Uint8Array): void;
  sha256(parts: Uint8Array[]): Promise<string>;
  sealSync(keys: KeysHandle, data: Input, level: number, boundId?: string | null): SealResult;
  openSync(keys: KeysHandle, sealed: Uint8Array, plainLength: number, boundId?: string | null, hashPlain?: boolean): OpenResult;
  /** CRC-64/Jones (Redis's RDB and DUMP checksum) folded into state = [low, high] halves. */
  crc64(state: Int32Array, data: Uint8Array): void;
  /** Returns free heap memory to the kernel (glibc; nothing elsewhere). */
  trim(): void;
  /** scrypt (RFC 7914) on the pool, a thread per lane; the same bytes as node:crypto's. */
  scrypt(password: Buffer, salt: Buffer, N: number, r: number, p: number, keyLength: number): Promise<Buffer>;
}

/**
 * Blobs below this are sealed and opened on the calling thread: for a 100-byte file a pool round trip
 * (async work, promise, wake-up) costs several times the work itself.
 */
const SYNC_BYTES = 4096;

export interface SealResult {
  sealed: Buffer;
  compressed: boolean;
}

export interface OpenResult {
  plain: Buffer;
  /** HMAC id recomputed from the plaintext (when asked for); the caller compares it with the id it asked for. */
  id?: string;
}

/** One blob of a run: where it lies in the run's sealed bytes, its plaintext length, its id, and where its plaintext goes. */
export interface RunBlob {
  offset: number;
  length: number;
  rawLength: number;
  id: string;
  at: number;
}

export interface OpenOptions {
  /**
   * The caller gives up `sealed` (freshly read, shared with nobody), which is decrypted over, so a raw
   * blob's plaintext is a view of it instead of a new allocation: a restore of incompressible data
   * then allocates no external memory per blob, and V8 runs no full GC for it.
   */
  inPlace?: boolean;
  /** The id the blob was sealed with as associated data (format 3); opening fails if it differs. */
  boundId?: string;
  /** Recompute the plaintext's HMAC id (default true); needless for a bound blob except in a full check. */
  hashPlain?: boolean;
}

/** A blob that failed to open: its tag did not verify, or it would not decompress to its length. */
function damaged(what: string, cause: unknown): BunkerError {
  return new BunkerError('corrupt', `${what} failed authentication or decompression (damaged or modified)`, {
    cause,
    hint: 'Run `bunker repo:check --read-data` to list every damaged object.',
    details: { object: what },
  });
}

let loaded: CodecAddon | undefined;

export function codecAddon(): CodecAddon {
  loaded ??= loadNativeAddon<CodecAddon>('bunker_codec.node', "the repository's native codec");
  return loaded;
}

/**
 * Runs blob work on the thread pool, at most `size` operations at once: libuv's pool (4 threads by
 * default) also serves file reads and writes, and those must not wait behind a queue of compressions.
 */
export class NativeCodec {
  readonly size: number;
  private readonly addon = codecAddon();
  private readonly keys: KeysHandle;
  private running = 0;
  /** hash() requests not started yet, oldest first. */
  private readonly hashes: HashRequest[] = [];
  private readonly queue: (() => void)[] = [];
  private closed = false;

  constructor(keys: { encKey: Buffer; idKey: Buffer }, size = Math.max(1, Math.min(4, availableParallelism()))) {
    this.keys = this.addon.keys(keys.encKey, keys.idKey);
    this.size = size;
  }

  /** HMAC-SHA-256 id of a small blob on this thread (a pool trip costs more than hashing it). */
  hashSync(data: Input): string {
    return this.addon.hashSync(this.keys, data);
  }

  /**
   * HMAC-SHA-256 id of a blob, on the pool. `data` must not change until this settles. Requests that
   * wait for a slot are hashed two at a time: SHA-NI's round latency leaves room for a second message,
   * so one thread hashes two chunks block by block ~1.4x as fast as one after the other.
   */
  hash(data: Input): Promise<string> {
    let request!: HashRequest;
    const id = new Promise<string>((resolve, reject) => (request = { data, resolve, reject }));
    this.hashes.push(request);
    this.run(() => this.hashWaiting()).catch((err: unknown) => {
      const at = this.hashes.indexOf(request);
      if (at >= 0) this.hashes.splice(at, 1);
      request.reject(err); // closed
    });
    return id;
  }

  /** Hashes the oldest one or two waiting requests; nothing when an earlier pair took this one along. */
  private async hashWaiting(): Promise<void> {
    const first = this.hashes.shift();
    if (!first) return;
    const second = this.hashes.shift();
    try {
      if (!second) return first.resolve(await this.addon.hash(this.keys, first.data));
      const a = asParts(first.data);
      const [idA, idB] = await this.addon.hash2(this.keys, [...a, ...asParts(second.data)], a.length);
      first.resolve(idA);
      second.resolve(idB);
    } catch (err) {
      first.reject(err);
      second?.reject(err);
    }
  }

  /** Plain SHA-256 of the concatenated parts (a pack's name), on the pool. */
  sha256(parts: Uint8Array[]): Promise<string> {
    return this.run(() => this.addon.sha256(parts));
  }

  /** Compresses (unless level is 0 or it does not pay) and encrypts a blob, bound to `boundId` when given. */
  seal(data: Input, level: number, boundId?: string): Promise<SealResult> {
    if (byteLength(data) < SYNC_BYTES && !this.closed) {
      try {
        return Promise.resolve(this.addon.sealSync(this.keys, data, level, boundId));
      } catch (err) {
        return Promise.reject(err);
      }
    }
    return this.run(() => this.addon.seal(this.keys, data, level, boundId));
  }

  /** Decrypts, authenticates, decompresses and (unless told not to) hashes a sealed blob; `what` names it in errors. */
  async open(sealed: Uint8Array, plainLength: number, what: string, options: OpenOptions = {}): Promise<OpenResult> {
    const { inPlace = false, boundId, hashPlain = true } = options;
    try {
      if (sealed.length < SYNC_BYTES && !this.closed) return this.addon.openSync(this.keys, sealed, plainLength, boundId, hashPlain);
      if (inPlace) {
        const r = await this.run(() => this.addon.openInPlace(this.keys, sealed, plainLength, boundId, hashPlain));
        if ('plain' in r) return r;
        // The blob's own length, not plainLength: the caller's length check must see a mismatch.
        return { plain: Buffer.from(sealed.buffer, sealed.byteOffset + r.offset, r.length), id: r.id };
      }
      return await this.run(() => this.addon.open(this.keys, sealed, plainLength, boundId, hashPlain));
    } catch (err) {
      if (err instanceof BunkerError) throw err;
      throw damaged(what, err);
    }
  }

  /**
   * Opens blobs lying in `sealed` (one ranged read of a pack, given up: it is decrypted over), each
   * into `out` at its `at`, with one pool trip for all of them.
   * Bound: the blobs were sealed with their ids (format 3). `what(i)` names blob i in errors. When this
   * settles, nothing writes to `out` any more, whatever the outcome.
   */
  async openRun(sealed: Uint8Array, blobs: readonly RunBlob[], out: Uint8Array, bound: boolean, what: (i: number) => string): Promise<void> {
    const layout = new Uint32Array(blobs.length * 4);
    const ids = Buffer.allocUnsafe(blobs.length * 32);
    for (let i = 0; i < blobs.length; i++) {
      const b = blobs[i]!;
      layout[i * 4] = b.offset;
      layout[i * 4 + 1] = b.length;
      layout[i * 4 + 2] = b.rawLength;
      layout[i * 4 + 3] = b.at;
      ids.write(b.id, i * 32, 32, 'hex');
    }
    try {
      if (sealed.length < SYNC_BYTES && !this.closed) this.addon.openRunSync(this.keys, sealed, layout, ids, bound, out);
      else await this.run(() => this.addon.openRun(this.keys, sealed, layout, ids, bound, out));
    } catch (err) {
      const e = err as Error & { index?: number; mismatch?: boolean };
      if (err instanceof BunkerError || typeof e.index !== 'number') throw err;
      const name = what(e.index);
      throw e.mismatch ? corrupt(`${name} does not match its id`, name) : damaged(name, err);
    }
  }

  private async run<T>(op: () => Promise<T>): Promise<T> {
    if (this.closed) throw new BunkerError('internal', 'the repository was closed');
    if (this.running < this.size) this.running++;
    else await new Promise<void>((resolve) => this.queue.push(resolve)); // a finishing op hands us its slot
    try {
      return await op();
    } finally {
      const next = this.queue.shift();
      if (next) next();
      else this.running--;
    }
  }

  /** Refuses new work; operations already on the pool finish on their own. */
  close(): void {
    this.closed = true;
    // The heap keeps freed blob memory for reuse while a repository is busy; a long-running worker
    // should not hold it between jobs.
    this.addon.trim();
  }
}
