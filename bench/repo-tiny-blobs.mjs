// Many tiny blobs through the repository, as a mount of small files stores them: N buffers of 70-200
// random bytes via storeBuffer(), 64 at a time, then a flush. Prints the time and memory after a GC.
// Usage: npm run build && node --expose-gc bench/repo-tiny-blobs.mjs [N=300000]   (peak RSS: wrap in /usr/bin/time -f %M)
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initRepository } from '../dist/repo/index.js';
import { FsBackend } from '../dist/storage/index.js';

const n = Number(process.argv[2] ?? 300_000);
const dir = mkdtempSync(join(tmpdir(), 'bunker-tiny-'));
try {
  const repo = await initRepository({ storage: new FsBackend(dir), password: 'bench', kdf: 'fast' });
  const started = performance.now();
  let batch = [];
  for (let i = 0; i < n; i++) {
    batch.push(repo.storeBuffer(randomBytes(70 + (i % 130))));
    if (batch.length === 64) {
      await Promise.all(batch);
      batch = [];
    }
  }
  await Promise.all(batch);
  await repo.flush();
  const ms = performance.now() - started;
  globalThis.gc?.();
  const m = process.memoryUsage();
  const mb = (b) => (b / 1e6).toFixed(0);
  console.log(`${n} tiny blobs in ${(ms / 1000).toFixed(1)} s; after GC: rss ${mb(m.rss)} MB, heap ${mb(m.heapUsed)} MB, external ${mb(m.external)} MB`);
  await repo.close();
} finally {
  rmSync(dir, { recursive: true, force: true });
}
