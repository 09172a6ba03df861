// A writer killed with SIGKILL at any moment leaves a repository that passes check --read-data and
// still reads every earlier snapshot. The writer is a child process running the built library (dist/).
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initRepository, openRepository } from '../../src/repo/index.js';
import type { SnapshotManifest, StreamRef } from '../../src/repo/types.js';
import { FsBackend } from '../../src/storage/index.js';

const dist = resolve(import.meta.dirname, '../../dist');
const password = 'crash-test';
let dir: string;
let storage: FsBackend;
const saved: { id: string; sha: string }[] = [];

// The child writes random data forever: streams, flushes (packs → index) and snapshots, so that a
// kill lands in the middle of a pack write, an index write or a snapshot write.
const CHILD = `
import { randomBytes } from 'node:crypto';
const { openRepository } = await import(process.env.DIST + '/repo/index.js');
const { FsBackend } = await import(process.env.DIST + '/storage/index.js');
const repo = await openRepository({ storage: new FsBackend(process.env.REPO), password: process.env.PW });
let round = 0;
for (;;) {
  const w = repo.writeStream();
  w.on('error', (err) => { console.error(err); process.exit(3); });
  for (let i = 0; i < 24; i++) if (!w.write(randomBytes(64 * 1024))) await new Promise((r) => w.once('drain', r));
  w.end();
  const ref = await w.done();
  if (++round % 3 === 0) await repo.saveSnapshot({ version: 1, time: new Date().toISOString(), tags: {}, mounts: {},
    services: { s: { engine: 'command', format: 1, streams: { x: ref }, trees: {}, meta: {}, size: ref.size, warnings: [] } } });
  else await repo.flush();
  process.stdout.write('.');
}
`;

function manifest(ref: StreamRef): SnapshotManifest {
  return {
    version: 1,
    time: new Date().toISOString(),
    tags: {},
    services: { s: { engine: 'command', format: 1, streams: { x: ref }, trees: {}, meta: {}, size: ref.size, warnings: [] } },
    mounts: {},
  };
}

beforeAll(async () => {
  if (!existsSync(join(dist, 'repo/index.js'))) throw new Error('dist/ is missing: run `npm run build` first');
  dir = await mkdtemp(join(tmpdir(), 'bunker-crash-'));
  storage = new FsBackend(dir);
  // Small chunks and packs, so that a short run writes many packs and index files.
  const repo = await initRepository({ storage, password, kdf: 'fast', chunkSizes: { min: 16384, avg: 65536, max: 262144 }, packSize: 256 * 1024 });
  for (let i = 0; i < 2; i++) {
    const data = randomBytes(700 * 1024);
    const id = await repo.saveSnapshot(manifest(await repo.storeBuffer(data)));
    saved.push({ id, sha: createHash('sha256').update(data).digest('hex') });
  }
  await repo.close();
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function runAndKill(afterProgress: number, extraDelayMs: number): Promise<number> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', CHILD], {
      env: { ...process.env, DIST: pathToFileURL(dist).href, REPO: dir, PW: password },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let progress = 0;
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdout.on('data', (d: Buffer) => {
      progress += d.length;
      if (progress >= afterProgress) setTimeout(() => child.kill('SIGKILL'), extraDelayMs);
    });
    child.on('exit', (code, signal) => {
      if (signal === 'SIGKILL') resolvePromise(progress);
      else reject(new Error(`child exited by itself (code ${code}): ${stderr}`));
    });
  });
}

describe('SIGKILL in the middle of writing', () => {
  it.each([
    [1, 0],
    [2, 7],
    [4, 23],
  ])('after %i rounds (+%i ms): check passes and earlier snapshots read back', async (rounds, delay) => {
    const progress = await runAndKill(rounds, delay);
    expect(progress).toBeGreaterThanOrEqual(rounds);
    const repo = await openRepository({ storage, password });
    try {
      const check = await repo.check({ readData: true });
      expect(check.errors).toEqual([]);
      expect(check.snapshotsChecked).toBeGreaterThanOrEqual(saved.length);
      for (const { id, sha } of saved) {
        const ref = (await repo.loadSnapshot(id)).services.s!.streams.x!;
        expect(createHash('sha256').update(await repo.readBuffer(ref)).digest('hex')).toBe(sha);
      }
      // Snapshots the child finished are complete too (check read them); add one more from here.
      saved.push({ id: await repo.saveSnapshot(manifest(await repo.storeBuffer(Buffer.from(`after kill ${rounds}`)))), sha: createHash('sha256').update(`after kill ${rounds}`).digest('hex') });
    } finally {
      await repo.close();
    }
  });

  it('never lists the temp files a killed write leaves', async () => {
    const names = (await storage.list('')).map((o) => o.name);
    expect(names.some((n) => n.includes('.tmp-'))).toBe(false);
    expect(names.filter((n) => n.startsWith('snapshots/')).length).toBeGreaterThanOrEqual(saved.length);
    expect((await readdir(dir)).sort()).toEqual(expect.arrayContaining(['config', 'data', 'index', 'keys', 'snapshots']));
  });
});
