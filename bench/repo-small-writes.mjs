// Many concurrent streams written in database-row-sized writes, as the database engines do (issue 2's
// follow-up: a duplicate-only MariaDB backup of 500 MB in many small writes took 20–46 s).
// Stores STREAMS × MB_PER_STREAM MB in WRITE_BYTES writes (a fresh Buffer each, like a driver's rows),
// then the same again (every chunk a duplicate). Usage: node bench/repo-small-writes.mjs (after npm run build)
//   env: STREAMS (100), MB_PER_STREAM (5), WRITE_BYTES (200)
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = resolve(fileURLToPath(import.meta.url), '../..');
const { initRepository } = await import(pathToFileURL(join(root, 'dist/repo/index.js')).href);
const { FsBackend } = await import(pathToFileURL(join(root, 'dist/storage/index.js')).href);
const streams = Number(process.env.STREAMS ?? 100);
const perStream = Number(process.env.MB_PER_STREAM ?? 5) * 1e6;
const writeBytes = Number(process.env.WRITE_BYTES ?? 200);
const dir = mkdtempSync(join(tmpdir(), 'bunker-small-writes-'));
try {
  const repo = await initRepository({ storage: new FsBackend(dir), password: 'bench', kdf: 'fast' });
  // Deterministic SQL-ish rows; each stream differs, each pass is identical.
  const text = Buffer.from(Array.from({ length: 20000 }, (_, i) => `(${i},'customer-${(i * 7919) % 9973}','2026-11-26 05:${String(i % 60).padStart(2, '0')}:00',${(i * 104729) % 100000}),\n`).join(''));
  let maxRss = 0;
  const sampler = setInterval(() => (maxRss = Math.max(maxRss, process.memoryUsage().rss)), 50);
  for (const pass of ['first store', 'again (all duplicates)']) {
    const t = performance.now();
    await Promise.all(Array.from({ length: streams }, async (_, s) => {
      const w = repo.writeStream({ label: `table${s}` });
      for (let off = 0, i = s * 131; off < perStream; off += writeBytes, i++) {
        const at = (i * writeBytes) % (text.length - writeBytes);
        const row = Buffer.from(text.subarray(at, at + writeBytes));
        row.writeUInt32LE(s, 0); // streams differ from each other
        if (!w.write(row)) await new Promise((r) => w.once('drain', r));
      }
      w.end();
      await w.done();
    }));
    await repo.flush();
    const secs = (performance.now() - t) / 1000;
    console.log(`${pass.padEnd(24)} ${secs.toFixed(2)} s  ${((streams * perStream) / 1e6 / secs).toFixed(0)} MB/s  (${streams} streams, ${((streams * perStream) / writeBytes / 1e6).toFixed(1)} M writes of ${writeBytes} B)`);
  }
  clearInterval(sampler);
  console.log(`peak RSS ${(maxRss / 1048576).toFixed(0)} MB`);
  await repo.close();
} finally {
  rmSync(dir, { recursive: true, force: true });
}
