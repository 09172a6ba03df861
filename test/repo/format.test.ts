// Format versions: format 2 names a pack by the SHA-256 of its tail (sealed header and trailer) and relies
// on the header tiling the body plus each blob's GCM tag; format 3 also seals each blob with its id as
// associated data, so reads need not recompute the id; format 4 (new repositories) writes index files in
// binary. Format 1 (packs named by the hash of all their bytes), 2 and 3 repositories, fixtures written by
// that format's code, stay readable, writable and checkable in their own form.
import { createHash, randomBytes } from 'node:crypto';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { initRepository, openRepository } from '../../src/repo/index.js';
import { PACK_TRAILER, type BunkerRepository } from '../../src/repo/repository.js';
import { open as openSealed, type MasterKeys } from '../../src/repo/crypto.js';
import type { SnapshotManifest, StreamRef } from '../../src/repo/types.js';
import { FsBackend } from '../../src/storage/index.js';

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
let dir: string | undefined;
afterEach(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
  dir = undefined;
});

function manifest(streams: Record<string, StreamRef>): SnapshotManifest {
  return { version: 1, time: new Date().toISOString(), tags: {}, mounts: {}, services: { s: { engine: 'command', format: 1, streams, trees: {}, meta: {}, size: 0, warnings: [] } } };
}

async function packFiles(storage: FsBackend): Promise<{ name: string; id: string; bytes: Buffer }[]> {
  const out = [];
  for (const o of await storage.list('data/')) out.push({ name: o.name, id: o.name.split('/').pop()!, bytes: await readFile(join(dir!, o.name)) });
  return out;
}

/** The pack's tail: sealed header ‖ trailer. */
function tail(pack: Buffer): Buffer {
  return pack.subarray(pack.length - PACK_TRAILER - pack.readUInt32LE(pack.length - PACK_TRAILER));
}

/** The plaintexts of a repository's index files. */
async function indexPlaintexts(storage: FsBackend, repo: BunkerRepository): Promise<Buffer[]> {
  const keys = (repo as unknown as { keys: MasterKeys }).keys;
  const out = [];
  for (const o of await storage.list('index/')) out.push(openSealed(keys.encKey, await storage.get(o.name), o.name));
  return out;
}

describe('format 4', () => {
  it('writes index files in binary, and a new handle finds every blob through them', async () => {
    dir = await mkdtemp(join(tmpdir(), 'bunker-format4-'));
    const storage = new FsBackend(dir);
    const repo = await initRepository({ storage, password: 'p', kdf: 'fast', chunkSizes: { min: 16384, avg: 32768, max: 65536 } });
    expect(repo.config.version).toBe(4);
    const data = randomBytes(300_000);
    const ref = await repo.storeBuffer(data);
    await repo.saveSnapshot(manifest({ data: ref }));
    const plaintexts = await indexPlaintexts(storage, repo);
    await repo.close();
    expect(plaintexts.length).toBeGreaterThan(0);
    for (const p of plaintexts) expect(p.subarray(0, 4).toString('latin1')).toBe('BKI\x04');
    const again = await openRepository({ storage: new FsBackend(dir), password: 'p' });
    expect(ref.chunks.length).toBeGreaterThan(3);
    for (const id of ref.chunks) expect(again.hasBlob(id)).toBe(true);
    expect((await again.readBuffer(ref)).equals(data)).toBe(true);
    expect((await again.check({ readData: true })).ok).toBe(true);
    await again.close();
  });
});

describe('format 2', () => {
  it('names packs by the hash of their tail, and check catches bytes no blob covers', async () => {
    dir = await mkdtemp(join(tmpdir(), 'bunker-format2-'));
    const storage = new FsBackend(dir);
    const repo = await initRepository({ storage, password: 'p', kdf: 'fast', chunkSizes: { min: 4096, avg: 16384, max: 65536 }, packSize: 64 * 1024 });
    const data = randomBytes(200 * 1024);
    const ref = await repo.storeBuffer(data);
    await repo.saveSnapshot(manifest({ data: ref }));
    await repo.close();
    const packs = await packFiles(storage);
    expect(packs.length).toBeGreaterThan(1);
    for (const p of packs) {
      expect(sha256(tail(p.bytes))).toBe(p.id);
      expect(sha256(p.bytes)).not.toBe(p.id);
    }

    // A fresh backend per check: FsBackend caches pack descriptors, and packs are never rewritten in use.
    const check = async () => {
      const r = await openRepository({ storage: new FsBackend(dir!), password: 'p' });
      try {
        return await r.check({ readData: true });
      } finally {
        await r.close();
      }
    };
    expect((await check()).ok).toBe(true);
    // Junk between the body and the header: the tail (hence the name) and every blob are intact, so
    // only the rule that the header's blobs tile the body finds it.
    const p = packs[0]!;
    const t = tail(p.bytes);
    await writeFile(join(dir, p.name), Buffer.concat([p.bytes.subarray(0, p.bytes.length - t.length), Buffer.from('junk'), t]));
    const result = await check();
    expect(result.ok).toBe(false);
    expect(result.errors.join('\n')).toContain('does not cover the pack body');
    await writeFile(join(dir, p.name), p.bytes);
    // A flipped bit in the body fails that blob's authentication; one in the tail fails the name.
    for (const at of [10, p.bytes.length - t.length + 20]) {
      const damaged = Buffer.from(p.bytes);
      damaged[at]! ^= 4;
      await writeFile(join(dir, p.name), damaged);
      expect((await check()).ok).toBe(false);
    }
    await writeFile(join(dir, p.name), p.bytes);
    expect((await check()).ok).toBe(true);
  });
});

describe('blobs bound to their ids (format 3 and later)', () => {
  it('binds each blob to its id: a blob read where another should be is refused, by reads and by check', async () => {
    dir = await mkdtemp(join(tmpdir(), 'bunker-format3-'));
    const storage = new FsBackend(dir);
    // One chunk per buffer, both in one pack: its body is sealed A ‖ sealed B, of equal lengths.
    const repo = await initRepository({ storage, password: 'p', kdf: 'fast', chunkSizes: { min: 16384, avg: 32768, max: 65536 } });
    expect(repo.config.version).toBeGreaterThanOrEqual(3); // and every later format
    const a = randomBytes(10_000);
    const b = randomBytes(10_000);
    const refA = await repo.storeBuffer(a);
    const refB = await repo.storeBuffer(b);
    await repo.saveSnapshot(manifest({ a: refA, b: refB }));
    await repo.close();
    const [pack, ...others] = await packFiles(storage);
    expect(others).toHaveLength(0);
    const sealedLength = (pack!.bytes.length - tail(pack!.bytes).length) / 2;
    expect(sealedLength).toBe(10_000 + 29); // raw: nonce, flag, tag

    const reopen = () => openRepository({ storage: new FsBackend(dir!), password: 'p' });
    let r = await reopen();
    expect((await r.readBuffer(refA)).equals(a)).toBe(true);
    expect((await r.check({ readData: true })).ok).toBe(true);
    await r.close();

    // Swap the two sealed blobs: each is intact and authentic, but stored where the other's id points.
    const swapped = Buffer.concat([pack!.bytes.subarray(sealedLength, 2 * sealedLength), pack!.bytes.subarray(0, sealedLength), tail(pack!.bytes)]);
    await writeFile(join(dir, pack!.name), swapped);
    r = await reopen();
    await expect(r.readBuffer(refA)).rejects.toThrow(/failed authentication/);
    await expect(r.readBuffer(refB)).rejects.toThrow(/failed authentication/);
    const result = await r.check({ readData: true });
    await r.close();
    expect(result.ok).toBe(false);
    expect(result.errors).toHaveLength(2);
  });
});

// Fixtures written by each format's own code: the repository keeps its format (and JSON index files)
// when written to, and everything old and new reads back and checks.
describe.each([
  { format: 2, bin: '24e6decd2ed3c357b55fcd0caf0be6c0dd5d97f0d7f3a0fedb810ef1c82c220c', text: 'f450470807ceaa573b7acebb27e8b987b0f2d64bf624c615fcb47f008c26fd85' },
  { format: 3, bin: '56ce8799dd6610a19b72c194e26d1d26de80e3241c10ded89b893a8d64971592', text: 'c3d3042ca3feb8a9ee2fc7bcb1e85d146ed289aba1ead03e7699350c5ace66d8' },
])('format $format fixture', ({ format, bin: binHash, text: textHash }) => {
  it('stays readable, writable (in its own format, index files still JSON) and checkable', async () => {
    dir = await mkdtemp(join(tmpdir(), `bunker-format${format}-fixture-`));
    await cp(join(import.meta.dirname, `fixtures/format-${format}`), dir, { recursive: true });
    const storage = new FsBackend(dir);
    const open = () => openRepository({ storage, password: `format-${format}-fixture` });
    const repo = await open();
    expect(repo.config.version).toBe(format);
    const [snapshot] = await repo.listSnapshots();
    const { bin, text } = (await repo.loadSnapshot(snapshot!.id)).services.s!.streams;
    expect(sha256(await repo.readBuffer(bin!))).toBe(binHash);
    expect(sha256(await repo.readBuffer(text!))).toBe(textHash);
    expect((await repo.check({ readData: true })).ok).toBe(true);

    const indexesBefore = (await storage.list('index/')).length;
    const more = randomBytes(150 * 1024);
    const ref = await repo.storeBuffer(more);
    await repo.saveSnapshot(manifest({ more: ref }));
    const plaintexts = await indexPlaintexts(storage, repo);
    await repo.close();
    expect(plaintexts).toHaveLength(indexesBefore + 1);
    for (const p of plaintexts) expect(JSON.parse(p.toString('utf8')).version).toBe(1);
    const again = await open();
    expect(again.config.version).toBe(format);
    expect((await again.readBuffer(ref)).equals(more)).toBe(true);
    expect((await again.readBuffer(bin!)).length).toBe(bin!.size);
    expect((await again.check({ readData: true })).ok).toBe(true);
    await again.close();
  });
});

describe('format 1', () => {
  it('stays readable, writable (packs still named by their whole hash) and checkable', async () => {
    dir = await mkdtemp(join(tmpdir(), 'bunker-format1-'));
    await cp(join(import.meta.dirname, 'fixtures/format-1'), dir, { recursive: true });
    const storage = new FsBackend(dir);
    const repo = await openRepository({ storage, password: 'format-1-fixture' });
    expect(repo.config.version).toBe(1);
    const [snapshot] = await repo.listSnapshots();
    const m = await repo.loadSnapshot(snapshot!.id);
    const { bin, text } = m.services.s!.streams;
    expect(sha256(await repo.readBuffer(bin!))).toBe('6576be4c5cb9bd0e34a723ec2d975ede0f31664f27638c1128f7068707f86818');
    expect(sha256(await repo.readBuffer(text!))).toBe('70027bbfe88345374430a4e2382ab9a798067851f811977c052c565209d7ba44');
    expect((await repo.check({ readData: true })).ok).toBe(true);

    const before = new Set((await storage.list('data/')).map((o) => o.name));
    const more = randomBytes(150 * 1024);
    const ref = await repo.storeBuffer(more);
    await repo.saveSnapshot(manifest({ more: ref }));
    const added = (await packFiles(storage)).filter((p) => !before.has(p.name));
    expect(added.length).toBeGreaterThan(0);
    for (const p of added) expect(sha256(p.bytes)).toBe(p.id);
    expect((await repo.readBuffer(ref)).equals(more)).toBe(true);
    expect((await repo.check({ readData: true })).ok).toBe(true);

    // Format 1 has no tiling rule: the whole-pack hash is what catches bytes no blob covers.
    const p = added[0]!;
    const t = tail(p.bytes);
    await writeFile(join(dir, p.name), Buffer.concat([p.bytes.subarray(0, p.bytes.length - t.length), Buffer.from('junk'), t]));
    await repo.close();
    const fresh = await openRepository({ storage: new FsBackend(dir), password: 'format-1-fixture' });
    const result = await fresh.check({ readData: true });
    await fresh.close();
    expect(result.ok).toBe(false);
    expect(result.errors.join('\n')).toContain('does not match its name');
  });
});
