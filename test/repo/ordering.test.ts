// Write ordering (packs → index → snapshot) and concurrent writers sharing one repository.
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { open, type MasterKeys } from '../../src/repo/crypto.js';
import { initRepository, openRepository } from '../../src/repo/index.js';
import { decodeIndexFile } from '../../src/repo/index-file.js';
import type { SnapshotManifest, StreamRef } from '../../src/repo/types.js';
import { FsBackend, type StorageBackend } from '../../src/storage/index.js';
import { createTestRepo, type TestRepo } from '../helpers/repo.js';

let t: TestRepo | undefined;
afterEach(async () => {
  await t?.cleanup();
  t = undefined;
});

function manifest(streams: Record<string, StreamRef>): SnapshotManifest {
  return {
    version: 1,
    time: new Date().toISOString(),
    tags: {},
    services: { s: { engine: 'command', format: 1, streams, trees: {}, meta: {}, size: 0, warnings: [] } },
    mounts: {},
  };
}

/** Records every completed put, and can fail puts whose name matches `failOn`. */
function recording(inner: StorageBackend): StorageBackend & { puts: string[]; failOn?: RegExp } {
  const rec = {
    puts: [] as string[],
    failOn: undefined as RegExp | undefined,
    location: inner.location,
    async put(name: string, body: Uint8Array | readonly Uint8Array[]) {
      if (rec.failOn?.test(name)) throw new Error(`injected failure writing ${name}`);
      await inner.put(name, body);
      rec.puts.push(name);
    },
    get: inner.get.bind(inner),
    stat: inner.stat.bind(inner),
    list: inner.list.bind(inner),
    delete: inner.delete.bind(inner),
  };
  return rec;
}

describe('write ordering', () => {
  it('stores packs before the index that names them, and the index before the snapshot', async () => {
    t = await createTestRepo();
    const storage = recording(t.storage);
    const repo = await openRepository({ storage, password: t.password });
    try {
      const ref = await repo.storeBuffer(randomBytes(3 * 1024 * 1024));
      await repo.putTree(Buffer.from('tree'));
      await repo.saveSnapshot(manifest({ a: ref }));
      const kinds = storage.puts.map((n) => n.split('/')[0]);
      expect(kinds.filter((k) => k === 'data').length).toBeGreaterThanOrEqual(2); // a data pack and a tree pack
      expect(kinds.lastIndexOf('data')).toBeLessThan(kinds.indexOf('index'));
      expect(kinds.lastIndexOf('index')).toBeLessThan(kinds.indexOf('snapshots'));
    } finally {
      await repo.close();
    }
  });

  it('writes no snapshot when its index cannot be written, and earlier snapshots stay intact', async () => {
    t = await createTestRepo();
    const storage = recording(t.storage);
    const first = await openRepository({ storage, password: t.password });
    const kept = await first.saveSnapshot(manifest({ a: await first.storeBuffer(Buffer.from('kept')) }));
    await first.close();

    const repo = await openRepository({ storage, password: t.password });
    storage.failOn = /^index\//;
    await repo.storeBuffer(randomBytes(1024 * 1024));
    await expect(repo.saveSnapshot(manifest({}))).rejects.toThrow(/injected failure/);
    expect(storage.puts.filter((n) => n.startsWith('snapshots/')).length).toBe(1);
    storage.failOn = undefined;
    await repo.close();

    const check = await (await t.reopen()).check({ readData: true });
    expect(check.errors).toEqual([]);
    const again = await t.reopen();
    expect((await again.listSnapshots()).map((s) => s.id)).toEqual([kept]);
  });
});

describe('pack writes', () => {
  it('run two at a time on slow storage, and an index names only packs already stored', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'bunker-packwrites-'));
    const inner = new FsBackend(dir);
    let writing = 0;
    let most = 0;
    const stored = new Set<string>();
    const indexProblems: string[] = [];
    const storage: StorageBackend = {
      location: inner.location,
      async put(name, body) {
        if (name.startsWith('index/')) {
          const packs = decodeIndexFile(open(keys.encKey, Buffer.from(body as Uint8Array), name), name);
          for (const { id } of packs) if (!stored.has(id)) indexProblems.push(`${name} names pack ${id} before it is stored`);
        }
        if (!name.startsWith('data/')) return inner.put(name, body);
        most = Math.max(most, ++writing);
        await new Promise((r) => setTimeout(r, 5 + Math.random() * 15));
        await inner.put(name, body);
        writing--;
        stored.add(name.split('/').pop()!);
      },
      get: inner.get.bind(inner),
      stat: inner.stat.bind(inner),
      list: inner.list.bind(inner),
      delete: inner.delete.bind(inner),
    };
    const repo = await initRepository({ storage, password: 'p', kdf: 'fast', chunkSizes: { min: 4096, avg: 16384, max: 65536 }, packSize: 32 * 1024 });
    const keys = (repo as unknown as { keys: MasterKeys }).keys;
    try {
      const data = randomBytes(2 * 1024 * 1024); // ~64 packs: an index is also written mid-stream (every 32 packs)
      const ref = await repo.storeBuffer(data);
      await repo.saveSnapshot(manifest({ a: ref }));
      expect(stored.size).toBeGreaterThan(40);
      expect(most).toBe(2);
      expect(indexProblems).toEqual([]);
      expect((await repo.readBuffer(ref)).equals(data)).toBe(true);
      expect((await repo.check({ readData: true })).errors).toEqual([]);
    } finally {
      await repo.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('pack writes on stalled storage', () => {
  it('keep sealing while packs wait for the storage, but stop taking data once three full packs are unwritten', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'bunker-stalled-'));
    const inner = new FsBackend(dir);
    let stalled = true;
    const held: (() => void)[] = [];
    let packPutsStarted = 0;
    const storage: StorageBackend = {
      location: inner.location,
      async put(name, body) {
        if (name.startsWith('data/')) {
          packPutsStarted++;
          if (stalled) await new Promise<void>((r) => held.push(r));
        }
        return inner.put(name, body);
      },
      get: inner.get.bind(inner),
      stat: inner.stat.bind(inner),
      list: inner.list.bind(inner),
      delete: inner.delete.bind(inner),
    };
    const packSize = 256 * 1024;
    const repo = await initRepository({ storage, password: 'p', kdf: 'fast', chunkSizes: { min: 16384, avg: 65536, max: 262144 }, packSize });
    try {
      const data = randomBytes(16 * 1024 * 1024);
      const w = repo.writeStream();
      let accepted = 0;
      // Write 64 KiB at a time until a write is not acknowledged within 300 ms (backpressure).
      while (accepted < data.length) {
        const piece = data.subarray(accepted, accepted + 65536);
        const acked = await Promise.race([
          new Promise<boolean>((r) => w.write(piece, () => r(true))),
          new Promise<boolean>((r) => setTimeout(() => r(false), 300)),
        ]);
        accepted += piece.length;
        if (!acked) break;
      }
      // Two pack writes started; the blobs that filled them did not stop the sealing of later ones
      // (more than three packs' worth taken), and the backlog bound stopped the stream well before
      // all 16 MiB (writer inbox 2 MiB + at most 3 full packs + one open + the blobs being sealed).
      expect(packPutsStarted).toBe(2);
      expect(accepted).toBeGreaterThan(3 * packSize);
      expect(accepted).toBeLessThan(6 * 1024 * 1024);
      stalled = false;
      for (const release of held.splice(0)) release();
      w.end(data.subarray(accepted));
      const ref = await w.done();
      expect((await repo.readBuffer(ref)).equals(data)).toBe(true);
    } finally {
      stalled = false;
      for (const release of held.splice(0)) release();
      await repo.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('concurrent writers', () => {
  it('two handles writing at once (shared and own data) both produce readable snapshots', async () => {
    t = await createTestRepo();
    const a = await t.reopen();
    const b = await t.reopen();
    const shared = randomBytes(4 * 1024 * 1024);
    const own = [randomBytes(3 * 1024 * 1024), randomBytes(3 * 1024 * 1024)];
    const [sa, sb] = await Promise.all(
      [a, b].map(async (repo, i) => {
        const streams = { shared: await repo.storeBuffer(shared), own: await repo.storeBuffer(own[i]!) };
        return repo.saveSnapshot(manifest(streams));
      }),
    );
    const reader = await t.reopen();
    expect((await reader.check({ readData: true })).errors).toEqual([]);
    for (const [id, i] of [[sa!, 0], [sb!, 1]] as const) {
      const m = await reader.loadSnapshot(id);
      expect((await reader.readBuffer(m.services.s!.streams.shared!)).equals(shared)).toBe(true);
      expect((await reader.readBuffer(m.services.s!.streams.own!)).equals(own[i]!)).toBe(true);
    }
  });

  it('a reader opened before a writer finished finds the new blobs', async () => {
    t = await createTestRepo();
    const reader = await t.reopen();
    const data = randomBytes(2 * 1024 * 1024);
    const id = await t.repo.saveSnapshot(manifest({ x: await t.repo.storeBuffer(data) }));
    const m = await reader.loadSnapshot(id);
    expect((await reader.readBuffer(m.services.s!.streams.x!)).equals(data)).toBe(true);
  });
});
