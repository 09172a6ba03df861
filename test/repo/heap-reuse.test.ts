// The codec keeps freed blob memory in the heap for the next blob (mallopt thresholds set when it loads),
// so sealing megabyte blobs one batch after another does not fault fresh pages in for every batch, and
// trim() hands the memory back. Measured in a child process with its own page-fault counters.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const addonPath = join(import.meta.dirname, '..', '..', 'build', 'Release', 'bunker_codec.node');

// Seals BATCHES batches of 8 incompressible 1 MiB blobs (each sealed copy is a fresh 1 MiB allocation
// on a pool thread, freed when V8 collects it), collecting after every batch. Reports the minor page
// faults of the later half of the batches, and RSS before and after trim().
const child = `
const { createRequire } = require('node:module');
const { randomBytes } = require('node:crypto');
const addon = require(${JSON.stringify(addonPath)});
const keys = addon.keys(randomBytes(32), randomBytes(32));
const input = randomBytes(1 << 20);
const BATCHES = 24;
(async () => {
  let faultsLater = 0;
  for (let b = 0; b < BATCHES; b++) {
    const before = process.resourceUsage().minorPageFault;
    const sealed = await Promise.all(Array.from({ length: 8 }, () => addon.seal(keys, input, 0)));
    if (sealed.some((s) => s.sealed.length !== input.length + 29)) throw new Error('bad seal');
    sealed.length = 0;
    global.gc();
    if (b >= BATCHES / 2) faultsLater += process.resourceUsage().minorPageFault - before;
  }
  const rssBefore = process.memoryUsage().rss;
  addon.trim();
  const rssAfter = process.memoryUsage().rss;
  console.log(JSON.stringify({ faultsLater, rssBefore, rssAfter, sealedPages: (BATCHES / 2) * 8 * 256 }));
})();
`;

describe('codec heap reuse', () => {
  it('reuses freed blob memory instead of faulting in new pages, and trim() returns it', () => {
    const r = spawnSync(process.execPath, ['--expose-gc', '-e', child], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    const { faultsLater, rssBefore, rssAfter, sealedPages } = JSON.parse(r.stdout) as { faultsLater: number; rssBefore: number; rssAfter: number; sealedPages: number };
    // Fresh memory for every sealed copy would be `sealedPages` faults (24,576). With glibc's sliding
    // defaults this took 4,300-6,800 (memory trimmed and faulted in again); with the codec's thresholds
    // 260-1,300 (V8's own heap growth, mostly).
    expect(faultsLater).toBeLessThan(sealedPages / 10);
    // What was kept for reuse (a batch is 8 MiB) goes back to the kernel on trim().
    expect(rssBefore - rssAfter).toBeGreaterThan(2 << 20);
  });
});
