// A throwaway in-memory RepoWriter/RepoReader for engine development before the real repository
// landed. Tests that claim a round trip must use createTestRepo() (test/helpers/repo.ts) instead.
import { createHash } from 'node:crypto';
import { PassThrough, Readable, Writable } from 'node:stream';
import type { BlobId, RepoReader, RepoWriter, StreamRef, StreamWriter, WriteStats } from '../../src/repo/types.js';

export class MemoryRepo implements RepoWriter, RepoReader {
  private blobs = new Map<BlobId, Buffer>();
  private totals: WriteStats = { bytes: 0, storedBytes: 0, chunks: 0, newChunks: 0 };

  private put(data: Buffer): BlobId {
    const id = createHash('sha256').update(data).digest('hex');
    this.totals.chunks++;
    this.totals.bytes += data.length;
    if (!this.blobs.has(id)) {
      this.blobs.set(id, Buffer.from(data));
      this.totals.newChunks++;
      this.totals.storedBytes += data.length;
    }
    return id;
  }

  writeStream(): StreamWriter {
    const parts: Buffer[] = [];
    let resolveDone!: (r: StreamRef) => void;
    let rejectDone!: (e: unknown) => void;
    const result = new Promise<StreamRef>((res, rej) => ((resolveDone = res), (rejectDone = rej)));
    const w = new Writable({
      write: (chunk: Buffer, _enc, cb) => (parts.push(chunk), cb()),
      final: (cb) => {
        const all = Buffer.concat(parts);
        const chunks: BlobId[] = [];
        for (let i = 0; i < all.length; i += 1 << 20) chunks.push(this.put(all.subarray(i, i + (1 << 20))));
        resolveDone({ size: all.length, chunks });
        cb();
      },
    });
    w.on('error', rejectDone);
    return Object.assign(w, { done: () => result, storedBytes: 0 }) as StreamWriter;
  }

  async storeBuffer(data: Uint8Array): Promise<StreamRef> {
    const buf = Buffer.from(data);
    return { size: buf.length, chunks: buf.length ? [this.put(buf)] : [] };
  }

  async putTree(data: Uint8Array): Promise<BlobId> {
    return this.put(Buffer.from(data));
  }

  hasBlob(id: BlobId): boolean {
    return this.blobs.has(id);
  }

  stats(): WriteStats {
    return { ...this.totals };
  }

  readStream(ref: StreamRef): Readable {
    const out = new PassThrough();
    const self = this;
    Readable.from(
      (function* () {
        for (const id of ref.chunks) {
          const blob = self.blobs.get(id);
          if (!blob) throw new Error(`blob ${id} missing`);
          yield blob;
        }
      })(),
    ).pipe(out);
    return out;
  }

  async readBuffer(ref: StreamRef): Promise<Buffer> {
    return Buffer.concat(ref.chunks.map((id) => this.blobs.get(id)!));
  }

  async readInto(ref: StreamRef, out: Buffer): Promise<void> {
    const data = await this.readBuffer(ref);
    if (data.length !== out.length) throw new Error(`stream is ${data.length} bytes, the buffer ${out.length}`);
    data.copy(out);
  }

  async getTree(id: BlobId): Promise<Buffer> {
    const blob = this.blobs.get(id);
    if (!blob) throw new Error(`tree ${id} missing`);
    return blob;
  }
}
