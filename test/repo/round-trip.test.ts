import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { createTestRepo, type TestRepo } from '../helpers/repo.js';
import type { Repository, SnapshotManifest, StreamRef } from '../../src/repo/types.js';

const MiB = 1024 * 1024;
let t: TestRepo | undefined;
afterEach(async () => {
  await t?.cleanup();
  t = undefined;
});

async function write(repo: Repository, data: Buffer, pieceSize = 64 * 1024): Promise<StreamRef> {
  const w = repo.writeStream({ label: 'test' });
  const pieces = function* () {
    for (let i = 0; i < data.length; i += pieceSize) yield data.subarray(i, i + pieceSize);
  };
  await pipeline(Readable.from(pieces()), w);
  return w.done();
}

async function read(repo: Repository, ref: StreamRef): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of repo.readStream(ref)) parts.push(part as Buffer);
  return Buffer.concat(parts);
}

function manifest(streams: Record<string, StreamRef>): SnapshotManifest {
  return {
    version: 1,
    time: new Date().toISOString(),
    tags: { env: 'test' },
    services: { db: { engine: 'command', format: 1, streams, trees: {}, meta: {}, size: 0, warnings: [] } },
    mounts: {},
  };
}

describe('stream round trips', () => {
  // Sizes around the chunker's limits (min 512 KiB, max 8 MiB) and the trivial ones.
  const sizes = [0, 1, 512 * 1024 - 1, 512 * 1024, 512 * 1024 + 1, 8 * MiB - 1, 8 * MiB, 8 * MiB + 1, 20 * MiB + 12345];
  it.each(sizes)('%i bytes survive a write, a reopen and a read', async (size) => {
    t = await createTestRepo();
    const data = randomBytes(size);
    const ref = await write(t.repo, data);
    expect(ref.size).toBe(size);
    expect((await read(t.repo, ref)).equals(data)).toBe(true);
    const id = await t.repo.saveSnapshot(manifest({ dump: ref }));
    const again = await t.reopen();
    const loaded = await again.loadSnapshot(id);
    const ref2 = loaded.services.db!.streams.dump!;
    expect((await read(again, ref2)).equals(data)).toBe(true);
    expect((await again.readBuffer(ref2)).equals(data)).toBe(true);
  });

  it('stores compressible text smaller than its size and buffers like streams', async () => {
    t = await createTestRepo();
    const text = Buffer.from('insert into customer values (1, "alice", "bob");\n'.repeat(200_000));
    const ref = await t.repo.storeBuffer(text);
    await t.repo.flush();
    const stats = await t.repo.repoStats();
    expect(stats.storedBytes).toBeLessThan(text.length / 5);
    expect((await t.repo.readBuffer(ref)).equals(text)).toBe(true);
    // storeBuffer and writeStream chunk alike, so the same bytes dedup completely.
    const before = t.repo.stats().newChunks;
    const ref2 = await write(t.repo, text);
    expect(ref2.chunks).toEqual(ref.chunks);
    expect(t.repo.stats().newChunks).toBe(before);
  });

  it('trees round trip and are stored once', async () => {
    t = await createTestRepo();
    const tree = Buffer.from('a tree object');
    const id = await t.repo.putTree(tree);
    expect(await t.repo.putTree(tree)).toBe(id);
    expect(t.repo.hasBlob(id)).toBe(true);
    expect((await t.repo.getTree(id)).equals(tree)).toBe(true);
    await t.repo.flush();
    const again = await t.reopen();
    expect((await again.getTree(id)).equals(tree)).toBe(true);
  });

  it('lists, loads and forgets snapshots', async () => {
    t = await createTestRepo();
    const ref = await t.repo.storeBuffer(Buffer.from('hello'));
    const a = await t.repo.saveSnapshot(manifest({ a: ref }));
    const b = await t.repo.saveSnapshot(manifest({ b: ref }));
    expect((await t.repo.listSnapshots()).map((s) => s.id).sort()).toEqual([a, b].sort());
    expect(await t.repo.hasSnapshot(a)).toBe(true);
    await t.repo.forgetSnapshot(a);
    expect(await t.repo.hasSnapshot(a)).toBe(false);
    await expect(t.repo.loadSnapshot(a)).rejects.toMatchObject({ code: 'not_found' });
    expect((await t.repo.check()).ok).toBe(true);
  });
});
