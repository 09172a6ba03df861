import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { initRepository, openRepository } from '../repo/index.js';
import type { StorageBackend } from './backend.js';
import { FsBackend } from './fs-backend.js';
import { openStorage } from './open-storage.js';
import { ReplicatedBackend } from './replicated-backend.js';

let base: string;
let dirs: string[];
beforeEach(async () => {
  base = await mkdtemp(join(tmpdir(), 'bunker-repl-'));
  dirs = ['a', 'b', 'c'].map((n) => join(base, n));
});
afterEach(async () => {
  await rm(base, { recursive: true, force: true });
});

/** A replica that fails every operation while `down` is set (an unreachable location). */
function flaky(inner: StorageBackend): StorageBackend & { down: boolean } {
  const fail = async (): Promise<never> => {
    throw new Error(`${inner.location} is unreachable`);
  };
  const f = {
    down: false,
    location: inner.location,
    put: (n: string, b: Uint8Array | readonly Uint8Array[]) => (f.down ? fail() : inner.put(n, b)),
    get: (n: string, r?: { offset: number; length: number }) => (f.down ? fail() : inner.get(n, r)),
    stat: (n: string) => (f.down ? fail() : inner.stat(n)),
    list: (p: string) => (f.down ? fail() : inner.list(p)),
    delete: (n: string) => (f.down ? fail() : inner.delete(n)),
  };
  return f;
}

describe('ReplicatedBackend', () => {
  it('openStorage builds it for several locations', () => {
    const s = openStorage(dirs.map((d, i) => ({ name: `loc${i}`, url: `file://${d}` })), base);
    expect(s).toBeInstanceOf(ReplicatedBackend);
    expect(s.location).toContain(dirs[2]!);
  });

  it('writes to every location; a repository survives losing one', async () => {
    const replicas = dirs.map((d) => new FsBackend(d));
    const storage = new ReplicatedBackend(replicas);
    const repo = await initRepository({ storage, password: 'pw', kdf: 'fast' });
    const data = Buffer.from('replicated '.repeat(100_000));
    const ref = await repo.storeBuffer(data);
    const id = await repo.saveSnapshot({ version: 1, time: new Date().toISOString(), tags: {}, mounts: {},
      services: { s: { engine: 'command', format: 1, streams: { x: ref }, trees: {}, meta: {}, size: data.length, warnings: [] } } });
    await repo.close();
    for (const r of replicas) expect((await r.list('snapshots/')).map((o) => o.name)).toEqual([`snapshots/${id}`]);

    await rm(dirs[0]!, { recursive: true, force: true }); // the first location is lost entirely
    const again = await openRepository({ storage: new ReplicatedBackend(replicas), password: 'pw' });
    const m = await again.loadSnapshot(id);
    expect((await again.readBuffer(m.services.s!.streams.x!)).equals(data)).toBe(true);
    await again.close();
  });

  it('needs a write quorum: one location down is fine, two of three is not', async () => {
    const replicas = dirs.map((d) => flaky(new FsBackend(d)));
    const storage = new ReplicatedBackend(replicas);
    replicas[1]!.down = true;
    await storage.put('index/x', Buffer.from('1'));
    expect((await storage.get('index/x')).toString()).toBe('1');
    replicas[0]!.down = true;
    expect((await storage.get('index/x')).toString()).toBe('1'); // falls back to the third
    await expect(storage.put('index/y', Buffer.from('2'))).rejects.toMatchObject({ code: 'storage' });
    await expect(storage.put('index/y', Buffer.from('2'))).rejects.toThrow(/1 of 2 required/);
  });
});
