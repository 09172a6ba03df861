// The fast paths of writeStream (small writes staged and chunked in batches) and readStream (blobs
// merged into ranged pack reads, read ahead): same chunks and bytes as the plain paths, errors intact.
import { createHash, randomBytes } from 'node:crypto';
import { readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { openRepository } from '../../src/repo/index.js';
import { FsBackend, type StorageBackend } from '../../src/storage/index.js';
import { createTestRepo, type TestRepo } from '../helpers/repo.js';
import type { StreamRef } from '../../src/repo/types.js';

const MiB = 1024 * 1024;
let t: TestRepo | undefined;
afterEach(async () => {
  await t?.cleanup();
  t = undefined;
});

/** Writes `data` in pieces of random sizes in [1, maxPiece], honouring backpressure. */
async function writeInPieces(t: TestRepo, data: Buffer, maxPiece: number, seed: number): Promise<StreamRef> {
  const w = t.repo.writeStream({ label: 'pieces' });
  let x = seed;
  for (let i = 0; i < data.length; ) {
    x = (x * 1103515245 + 12345) >>> 0;
    const n = 1 + (x % maxPiece);
    // A fresh copy per write, as a driver hands over rows: the writer must not keep a reference.
    const piece = Buffer.from(data.subarray(i, i + n));
    i += n;
    if (!w.write(piece)) await new Promise((r) => w.once('drain', r));
  }
  w.end();
  return w.done();
}

async function readAll(t: TestRepo, ref: StreamRef): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of t.repo.readStream(ref)) parts.push(part as Buffer);
  return Buffer.concat(parts);
}

describe('writeStream small writes and readStream merged reads', () => {
  it('chunks tiny writes exactly like one large buffer and reads them back', async () => {
    t = await createTestRepo();
    const data = randomBytes(6 * MiB + 12345);
    const whole = await t.repo.storeBuffer(data);
    const small = await writeInPieces(t, data, 300, 1); // ~40,000 writes
    const mixed = await writeInPieces(t, data, 700 * 1024, 2); // sizes on both sides of the stage
    expect(small).toEqual(whole);
    expect(mixed).toEqual(whole);
    expect((await readAll(t, small)).equals(data)).toBe(true);
  }, 60_000);

  it('reads a stream whose blobs span packs, repeat, and interleave with another stream', async () => {
    t = await createTestRepo();
    const a = randomBytes(40 * MiB);
    const b = randomBytes(5 * MiB);
    const refA = await writeInPieces(t, a, 64 * 1024, 3);
    const refB = await writeInPieces(t, Buffer.concat([b, a.subarray(0, 9 * MiB), b]), 64 * 1024, 4);
    await t.repo.flush();
    expect(createHash('sha256').update(await readAll(t, refA)).digest('hex')).toBe(createHash('sha256').update(a).digest('hex'));
    expect((await readAll(t, refB)).equals(Buffer.concat([b, a.subarray(0, 9 * MiB), b]))).toBe(true);
    // And from a second handle, which knows the blobs only from index files.
    const again = await t.reopen();
    const parts: Buffer[] = [];
    for await (const part of again.readStream(refA)) parts.push(part as Buffer);
    expect(Buffer.concat(parts).equals(a)).toBe(true);
  }, 120_000);

  it('fails a merged read when one blob in the middle of the run is damaged', async () => {
    t = await createTestRepo();
    const data = randomBytes(12 * MiB);
    const ref = await writeInPieces(t, data, 64 * 1024, 5);
    await t.repo.flush();
    const dirs = await readdir(join(t.dir, 'data'));
    const packs = (await Promise.all(dirs.map(async (d) => (await readdir(join(t!.dir, 'data', d))).map((f) => join(t!.dir, 'data', d, f))))).flat();
    expect(packs.length).toBe(1);
    const { readFile } = await import('node:fs/promises');
    const body = await readFile(packs[0]!);
    body[Math.floor(body.length / 2)]! ^= 0x01; // inside a blob in the middle of the pack
    await writeFile(packs[0]!, body);
    const again = await t.reopen();
    const read = async () => {
      for await (const _ of again.readStream(ref)) void _;
    };
    await expect(read()).rejects.toThrow(/failed authentication|does not match/);
  }, 60_000);

  it('many concurrent streams of small writes all finish (no lost wake-up under backpressure)', async () => {
    t = await createTestRepo();
    const streams = Array.from({ length: 24 }, (_, i) => randomBytes(2 * MiB + i * 1000));
    const refs = await Promise.all(streams.map((data, i) => writeInPieces(t!, data, 400, 10 + i)));
    await t.repo.flush();
    for (const [i, ref] of refs.entries()) expect((await readAll(t, ref)).equals(streams[i]!)).toBe(true);
  }, 60_000);

  it('a write after the stream failed reports the failure instead of taking data', async () => {
    t = await createTestRepo();
    const w = t.repo.writeStream({ label: 'late' });
    w.write(Buffer.alloc(10));
    await t.repo.close();
    const err = await new Promise<Error>((resolve) => {
      w.on('error', resolve);
      w.write(Buffer.alloc(10));
    });
    expect(err.message).toMatch(/closed/);
  });
});

describe('writeStream hand-off', () => {
  it('acknowledges a large write before chunking it, so a piped reader can read the next piece meanwhile', async () => {
    t = await createTestRepo();
    const w = t.repo.writeStream({ label: 'ahead' });
    const data = randomBytes(3 * MiB);
    const chunksAtCallback = await new Promise<number>((resolve) => w.write(data, () => resolve(t!.repo.stats().chunks)));
    expect(chunksAtCallback).toBe(0);
    w.end();
    const ref = await w.done();
    expect(ref.chunks.length).toBeGreaterThanOrEqual(2);
    expect((await readAll(t, ref)).equals(data)).toBe(true);
  });

  it('a storage failure while chunking in the background fails the pipeline and done()', async () => {
    t = await createTestRepo();
    const storage: StorageBackend = {
      location: t.storage.location,
      put: async (name, body) => {
        if (name.startsWith('data/')) throw new Error('injected pack write failure');
        return t!.storage.put(name, body);
      },
      get: t.storage.get.bind(t.storage),
      stat: t.storage.stat.bind(t.storage),
      list: t.storage.list.bind(t.storage),
      delete: t.storage.delete.bind(t.storage),
    };
    const repo = await openRepository({ storage, password: t.password });
    const w = repo.writeStream({ label: 'failing' });
    const pieces = function* () {
      for (let i = 0; i < 40; i++) yield randomBytes(MiB);
    };
    await expect(pipeline(Readable.from(pieces()), w)).rejects.toThrow(/injected pack write failure/);
    await expect(w.done()).rejects.toThrow(/injected pack write failure/);
    await repo.close().catch(() => {});
  });
});

describe('packs of many small blobs', () => {
  it('reads back tiny and large blobs interleaved in packs (small ones share segments), after a reopen', async () => {
    t = await createTestRepo();
    const items: { data: Buffer; ref: StreamRef }[] = [];
    for (let i = 0; i < 6000; i++) {
      // Mostly tiny incompressible files, with a large one now and then that is kept as its own part.
      const data = i % 500 === 0 ? randomBytes(3 * MiB) : randomBytes(20 + (i % 180));
      items.push({ data, ref: await t.repo.storeBuffer(data) });
    }
    await t.repo.flush();
    const again = await t.reopen();
    for (const { data, ref } of items) expect((await again.readBuffer(ref)).equals(data)).toBe(true);
    expect((await again.check({ readData: true })).errors).toEqual([]);
  });
});

describe('readInto: many small blobs read in pack order', () => {
  /** All pack files of the test repository. */
  async function packFiles(dir: string): Promise<string[]> {
    const dirs = await readdir(join(dir, 'data'));
    return (await Promise.all(dirs.map(async (d) => (await readdir(join(dir, 'data', d))).map((f) => join(dir, 'data', d, f))))).flat();
  }

  it('fills the buffer in the stream\'s order from blobs stored out of order, across packs, with repeats and gaps', async () => {
    t = await createTestRepo({ packSize: 256 * 1024 });
    // Stored concurrently, so they land in the packs in the order their sealing finished.
    const files = Array.from({ length: 3000 }, (_, i) => (i % 7 === 0 ? randomBytes(200 + i) : Buffer.from(`row ${i};`.repeat(50 + (i % 400)))));
    const refs = await Promise.all(files.map((f) => t!.repo.storeBuffer(f)));
    await t.repo.flush();
    const again = await t.reopen();
    // A "directory": every third file, in reverse, with one file twice and an empty one.
    const picked = files.map((_, i) => i).filter((i) => i % 3 === 0).reverse();
    picked.splice(5, 0, picked[20]!);
    const empty = await t.repo.storeBuffer(Buffer.alloc(0));
    const ref = { size: 0, chunks: [] as string[] };
    for (const i of [...picked.slice(0, 10), -1, ...picked.slice(10)]) {
      const r = i < 0 ? empty : refs[i]!;
      ref.size += r.size;
      ref.chunks.push(...r.chunks);
    }
    const out = Buffer.alloc(ref.size, 0xee);
    await again.readInto(ref, out);
    const expected = Buffer.concat([...picked.slice(0, 10).map((i) => files[i]!), Buffer.alloc(0), ...picked.slice(10).map((i) => files[i]!)]);
    expect(out.equals(expected)).toBe(true);
    expect((await packFiles(t.dir)).length).toBeGreaterThan(3);
    // A reference that claims another size is refused before anything is read.
    await expect(again.readInto({ ...ref, size: ref.size + 1 }, Buffer.alloc(ref.size + 1))).rejects.toThrow(/stream is \d+ bytes, but its reference says/);
  }, 60_000);

  it('names the damaged blob, and reports a missing pack, after every read into the buffer has settled', async () => {
    t = await createTestRepo();
    const files = Array.from({ length: 400 }, (_, i) => Buffer.from(`line ${i}\n`.repeat(300)));
    const refs = [];
    for (const f of files) refs.push(await t.repo.storeBuffer(f));
    await t.repo.flush();
    const ref = { size: refs.reduce((n, r) => n + r.size, 0), chunks: refs.flatMap((r) => r.chunks) };
    const [pack] = await packFiles(t.dir);
    const { readFile, rm } = await import('node:fs/promises');
    const body = await readFile(pack!);
    body[Math.floor(body.length / 4)]! ^= 0x01; // among the blobs (the header is at the end)
    await writeFile(pack!, body);
    const again = await t.reopen();
    await expect(again.readInto(ref, Buffer.alloc(ref.size))).rejects.toThrow(/blob [0-9a-f]{64} in pack data\/.+ failed authentication/);
    await rm(pack!);
    // A new backend: the old one keeps the pack it already opened.
    const third = await openRepository({ storage: new FsBackend(t.dir), password: t.password });
    await expect(third.readInto(ref, Buffer.alloc(ref.size))).rejects.toThrow(/pack data\/.+ \(holding blob [0-9a-f]{64}\) is missing/);
    await third.close();
  }, 60_000);
});
