// A flipped bit or a truncation anywhere in a pack, index or snapshot file is detected by
// check --read-data, and a read never returns wrong bytes (it fails when it touches the damage).
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initRepository, openRepository } from '../../src/repo/index.js';
import type { SnapshotManifest, StreamRef } from '../../src/repo/types.js';
import { FsBackend } from '../../src/storage/index.js';

const password = 'corruption-test';
let dir: string;
let storage: FsBackend;
let snapshotId: string;
const originals = new Map<string, Buffer>();

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'bunker-corrupt-'));
  storage = new FsBackend(dir);
  // Small chunks and packs: several packs and blobs per pack in a few hundred KiB.
  const repo = await initRepository({ storage, password, kdf: 'fast', chunkSizes: { min: 4096, avg: 16384, max: 65536 }, packSize: 96 * 1024 });
  const streams: Record<string, StreamRef> = {};
  streams.random = await repo.storeBuffer(randomBytes(300 * 1024));
  streams.text = await repo.storeBuffer(Buffer.from('row,value,customer\n'.repeat(20000)));
  const tree = await repo.putTree(Buffer.from('not a real tree, but stored as one'));
  const manifest: SnapshotManifest = {
    version: 1,
    time: new Date().toISOString(),
    tags: {},
    services: { db: { engine: 'command', format: 1, streams, trees: {}, meta: {}, size: 0, warnings: [] } },
    mounts: {},
  };
  void tree;
  snapshotId = await repo.saveSnapshot(manifest);
  await repo.close();
  for (const prefix of ['data/', 'index/', 'snapshots/']) {
    for (const o of await storage.list(prefix)) originals.set(o.name, await readFile(join(dir, o.name)));
  }
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Opens the repository fresh, loads the snapshot and reads every stream; returns the outcome. */
async function readEverything(): Promise<{ ok: true; data: Buffer[] } | { ok: false; error: unknown }> {
  let repo;
  try {
    repo = await openRepository({ storage, password, workers: 1 });
    const m = await repo.loadSnapshot(snapshotId);
    const data: Buffer[] = [];
    for (const ref of Object.values(m.services.db!.streams)) data.push(await repo.readBuffer(ref));
    return { ok: true, data };
  } catch (error) {
    return { ok: false, error };
  } finally {
    await repo?.close();
  }
}

async function checkReadData(): Promise<{ ok: boolean; errors: string[] }> {
  let repo;
  try {
    repo = await openRepository({ storage, password, workers: 1 });
    return await repo.check({ readData: true });
  } catch (e) {
    // A damaged index can stop the repository from opening at all: that too is detection.
    return { ok: false, errors: [String(e)] };
  } finally {
    await repo?.close();
  }
}

describe('damage detection', () => {
  let baseline: Buffer[];
  beforeAll(async () => {
    const r = await readEverything();
    if (!r.ok) throw r.error;
    baseline = r.data;
    expect((await checkReadData()).ok).toBe(true);
  });

  for (const kind of ['data/', 'index/', 'snapshots/'] as const) {
    it(`detects a flipped bit or a truncation anywhere in ${kind} files`, async () => {
      const names = [...originals.keys()].filter((n) => n.startsWith(kind));
      expect(names.length).toBeGreaterThan(0);
      await fc.assert(
        fc.asyncProperty(
          fc.nat(names.length - 1),
          fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
          fc.nat(7),
          fc.boolean(),
          async (which, where, bit, truncate) => {
            const name = names[which]!;
            const original = originals.get(name)!;
            const position = Math.floor(where * original.length);
            const damaged = truncate ? original.subarray(0, position) : Buffer.from(original);
            if (!truncate) damaged[position]! ^= 1 << bit;
            await writeFile(join(dir, name), damaged);
            try {
              const check = await checkReadData();
              expect(check.ok, `${truncate ? 'truncation' : 'bit flip'} at ${position} of ${name} undetected`).toBe(false);
              const read = await readEverything();
              // Reads never return wrong bytes: either they fail, or the damage was outside every
              // byte they needed (a pack header or trailer, which only check reads) and the data is exact.
              if (read.ok) {
                expect(kind).toBe('data/');
                expect(read.data.length).toBe(baseline.length);
                read.data.forEach((d, i) => expect(d.equals(baseline[i]!)).toBe(true));
              }
            } finally {
              await writeFile(join(dir, name), original);
            }
          },
        ),
        { numRuns: 25 },
      );
    });
  }

  it('names the damaged object in errors', async () => {
    const name = [...originals.keys()].find((n) => n.startsWith('snapshots/'))!;
    const original = originals.get(name)!;
    await writeFile(join(dir, name), original.subarray(0, 10));
    try {
      const check = await checkReadData();
      expect(check.errors.join('\n')).toContain(name);
      const read = await readEverything();
      expect(read.ok).toBe(false);
      expect(read.ok ? '' : (read.error as Error & { code: string }).code).toBe('corrupt');
    } finally {
      await writeFile(join(dir, name), original);
    }
  });
});
