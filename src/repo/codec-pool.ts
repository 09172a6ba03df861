// Compression + encryption of blobs (and the reverse) in a pool of worker threads, so that chunking and
// hashing on the main thread overlap with zstd and AES-GCM on the other core(s).
//
// Blob plaintext format before sealing: one flag byte (0 = stored raw, 1 = zstd) then the payload.
// Incompressible chunks (zstd saves under 3 %, judged on samples for large chunks) are stored raw, so
// neither storing nor reading them costs compression work.
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { BunkerError } from '../core/index.js';

export interface SealResult {
  sealed: Buffer;
  compressed: boolean;
}

export interface OpenResult {
  plain: Buffer;
  /** HMAC id recomputed from the plaintext; the caller compares it with the id it asked for. */
  id: string;
}

// CommonJS source evaluated in each worker. Kept as a string so the pool works the same from
// TypeScript sources (tests) and from the compiled dist/ without a separate worker file.
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const crypto = require('node:crypto');
const zstd = require(workerData.zstdPath);
const encKey = Buffer.from(workerData.encKey);
const idKey = Buffer.from(workerData.idKey);
const FLAG_RAW = Buffer.from([0]);
const FLAG_ZSTD = Buffer.from([1]);
// Large chunks of random-looking data (media, encrypted or already compressed files) are common:
// three 16 KiB samples at level 1 tell cheaply whether compressing the whole chunk can pay.
function looksIncompressible(data) {
  if (data.length < 256 * 1024) return false;
  const n = 16 * 1024, mid = (data.length >> 1) - (n >> 1);
  const sample = Buffer.concat([data.subarray(0, n), data.subarray(mid, mid + n), data.subarray(data.length - n)]);
  return zstd.compress(sample, { compressionLevel: 1 }).length >= sample.length * 0.97;
}
function sealBlob(data, level) {
  let payload = data, flag = FLAG_RAW, compressed = false;
  if (level > 0 && data.length > 64 && !looksIncompressible(data)) {
    const z = zstd.compress(data, { compressionLevel: level });
    if (z.length < data.length * 0.97) { payload = z; flag = FLAG_ZSTD; compressed = true; }
  }
  const nonce = crypto.randomBytes(12);
  const c = crypto.createCipheriv('aes-256-gcm', encKey, nonce);
  const a = c.update(flag), b = c.update(payload); c.final();
  return { sealed: Buffer.concat([nonce, a, b, c.getAuthTag()]), compressed };
}
function openBlob(sealed) {
  if (sealed.length < 29) throw new Error('too short');
  const d = crypto.createDecipheriv('aes-256-gcm', encKey, sealed.subarray(0, 12));
  d.setAuthTag(sealed.subarray(sealed.length - 16));
  const body = d.update(sealed.subarray(12, sealed.length - 16));
  d.final();
  let plain;
  if (body[0] === 0) plain = body.subarray(1);
  else if (body[0] === 1) plain = zstd.decompress(body.subarray(1));
  else throw new Error('unknown blob flag ' + body[0]);
  return { plain, id: crypto.createHmac('sha256', idKey).update(plain).digest('hex') };
}
function transferable(buf) {
  if (buf.byteOffset === 0 && buf.byteLength === buf.buffer.byteLength) return buf;
  // Copy into an exclusively owned ArrayBuffer. Not Buffer.from(): under 4 KiB it copies into the
  // shared 8 KiB pool, and transferring that would move (and pin) the whole pool with each small blob.
  const own = Buffer.allocUnsafeSlow(buf.length);
  buf.copy(own);
  return own;
}
parentPort.on('message', (msg) => {
  try {
    const input = Buffer.from(msg.data.buffer, msg.data.byteOffset, msg.data.byteLength);
    if (msg.op === 'hash') {
      const id = crypto.createHmac('sha256', idKey).update(input).digest('hex');
      parentPort.postMessage({ seq: msg.seq, data: msg.data, id }, [msg.data.buffer]);
    } else if (msg.op === 'seal') {
      const r = sealBlob(input, msg.level);
      const out = transferable(r.sealed);
      parentPort.postMessage({ seq: msg.seq, data: out, compressed: r.compressed }, [out.buffer]);
    } else {
      const r = openBlob(input);
      const out = transferable(r.plain);
      parentPort.postMessage({ seq: msg.seq, data: out, id: r.id }, [out.buffer]);
    }
  } catch (err) {
    parentPort.postMessage({ seq: msg.seq, error: String(err && err.message || err) });
  }
});
`;

type Op = 'hash' | 'seal' | 'open';

interface Task {
  op: Op;
  data: Uint8Array;
  level: number;
  resolve: (msg: WorkerReply) => void;
  reject: (err: unknown) => void;
}

interface WorkerReply {
  seq: number;
  data?: Uint8Array;
  compressed?: boolean;
  id?: string;
  error?: string;
}

interface Slot {
  worker: Worker;
  busy: Map<number, Task>;
}

const require = createRequire(import.meta.url);

/** A buffer whose ArrayBuffer can be transferred without exposing or detaching unrelated memory. */
function ownedCopy(buf: Uint8Array): Uint8Array {
  if (buf.byteOffset === 0 && buf.byteLength === buf.buffer.byteLength && !(buf.buffer instanceof SharedArrayBuffer)) return buf;
  const copy = new Uint8Array(buf.byteLength);
  copy.set(buf);
  return copy;
}

export class CodecPool {
  private slots: Slot[] = [];
  private queue: Task[] = [];
  private seq = 0;
  private closed = false;
  readonly size: number;
  /** Tasks each worker may hold at once: 2 keeps a worker busy while its next input is in transit. */
  private static readonly PER_WORKER = 2;

  constructor(private readonly keys: { encKey: Buffer; idKey: Buffer }, size = Math.max(1, Math.min(4, availableParallelism()))) {
    this.size = size;
  }

  /** HMAC id of a chunk, computed in a worker; returns the chunk too (it travels to the worker and back). */
  async hash(data: Uint8Array): Promise<{ id: string; data: Buffer }> {
    const reply = await this.run('hash', data, 0);
    return { id: reply.id!, data: Buffer.from(reply.data!.buffer, reply.data!.byteOffset, reply.data!.byteLength) };
  }

  /** Compresses (unless level is 0 or it does not pay) and encrypts a blob. Consumes `data` (may detach it). */
  async seal(data: Uint8Array, level: number): Promise<SealResult> {
    const reply = await this.run('seal', data, level);
    return { sealed: Buffer.from(reply.data!.buffer, reply.data!.byteOffset, reply.data!.byteLength), compressed: !!reply.compressed };
  }

  /** Decrypts, authenticates, decompresses and hashes a sealed blob; `what` names it in errors. */
  async open(sealed: Uint8Array, what: string): Promise<OpenResult> {
    try {
      const reply = await this.run('open', sealed, 0);
      return { plain: Buffer.from(reply.data!.buffer, reply.data!.byteOffset, reply.data!.byteLength), id: reply.id! };
    } catch (err) {
      if (err instanceof BunkerError) throw err;
      throw new BunkerError('corrupt', `${what} failed authentication or decompression (damaged or modified)`, {
        cause: err,
        hint: 'Run `bunker repo:check --read-data` to list every damaged object.',
        details: { object: what },
      });
    }
  }

  private run(op: Op, data: Uint8Array, level: number): Promise<WorkerReply> {
    if (this.closed) return Promise.reject(new BunkerError('internal', 'the repository was closed'));
    return new Promise((resolve, reject) => {
      this.queue.push({ op, data, level, resolve, reject });
      this.pump();
    });
  }

  private pump(): void {
    while (this.queue.length > 0) {
      let slot = this.slots.reduce<Slot | undefined>((best, s) => (!best || s.busy.size < best.busy.size ? s : best), undefined);
      if ((!slot || slot.busy.size > 0) && this.slots.length < this.size) slot = this.spawn();
      if (!slot || slot.busy.size >= CodecPool.PER_WORKER) return;
      const task = this.queue.shift()!;
      const seq = ++this.seq;
      slot.busy.set(seq, task);
      slot.worker.ref(); // keep the process alive only while a worker has work
      const data = ownedCopy(task.data);
      slot.worker.postMessage({ seq, op: task.op, data, level: task.level }, [data.buffer as ArrayBuffer]);
    }
  }

  private spawn(): Slot {
    const worker = new Worker(WORKER_SOURCE, {
      eval: true,
      // The parent's flags (e.g. --input-type=module) must not change how the CommonJS source is read.
      execArgv: [],
      workerData: { zstdPath: require.resolve('zstd-napi'), encKey: this.keys.encKey, idKey: this.keys.idKey },
    });
    const slot: Slot = { worker, busy: new Map() };
    worker.unref();
    worker.on('message', (msg: WorkerReply) => {
      const task = slot.busy.get(msg.seq);
      if (!task) return;
      slot.busy.delete(msg.seq);
      if (slot.busy.size === 0) worker.unref();
      if (msg.error !== undefined) task.reject(new Error(msg.error));
      else task.resolve(msg);
      this.pump();
    });
    const fail = (err: unknown) => {
      this.slots = this.slots.filter((s) => s !== slot);
      for (const task of slot.busy.values()) task.reject(new BunkerError('internal', `codec worker failed: ${String(err)}`, { cause: err }));
      slot.busy.clear();
      if (!this.closed) this.pump();
    };
    worker.on('error', fail);
    worker.on('exit', (code) => {
      if (slot.busy.size > 0) fail(new Error(`exited with code ${code}`));
    });
    this.slots.push(slot);
    return slot;
  }

  /** Stops every worker; pending work is rejected. */
  async close(): Promise<void> {
    this.closed = true;
    for (const task of this.queue) task.reject(new BunkerError('internal', 'the repository was closed'));
    this.queue = [];
    const slots = this.slots;
    this.slots = [];
    await Promise.all(slots.map((s) => s.worker.terminate()));
  }
}
