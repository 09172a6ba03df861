// Throughput of the repository's native per-byte work, one thread each, on 64 MB of SQL-like text and
// 64 MB of random bytes: the gear scan (the chunker's hot loop), HMAC ids, seal (zstd 3 + AES-GCM),
// open (formats 1 and 2: the id recomputed) and open bound (format 3), in 1 MiB blobs. Figures in MB/s;
// compare builds on the same machine, not across machines.
// Usage: npm run build && node bench/repo-codec.mjs
import { randomBytes } from 'node:crypto';
import { gearTable } from '../dist/repo/chunker.js';
import { codecAddon, NativeCodec } from '../dist/repo/native-codec.js';

const SIZE = 64 << 20;
let text = '';
for (let i = 0; text.length < SIZE; i++) text += `INSERT INTO t VALUES (${i}, 'name${(i * 7919) % 100000}', ${(i * 31) % 977}.${i % 100});\n`;
const inputs = { text: Buffer.from(text.slice(0, SIZE)), random: randomBytes(SIZE) };
const codec = new NativeCodec({ encKey: randomBytes(32), idKey: randomBytes(32) }, 1);
const addon = codecAddon();
const gear = gearTable(randomBytes(32));

async function rate(label, fn) {
  let best = 0;
  for (let run = 0; run < 3; run++) {
    const started = performance.now();
    await fn();
    best = Math.max(best, SIZE / 1e6 / ((performance.now() - started) / 1000));
  }
  console.log(`${label.padEnd(18)} ${best.toFixed(0).padStart(6)} MB/s (best of 3)`);
}

for (const [name, data] of Object.entries(inputs)) {
  const blobs = [];
  for (let at = 0; at < data.length; at += 1 << 20) blobs.push(data.subarray(at, at + (1 << 20)));
  // The scan alone, over the whole buffer with the 1 MiB average's strict mask (a cut every ~4 MiB).
  await rate(`scan ${name}`, () => {
    const state = new Int32Array(1);
    for (let i = 0; i < data.length; ) {
      const cut = addon.scan(data, i, data.length, (0xffffffff << 10) | 0, gear, state);
      if (cut < 0) break;
      i = cut;
      state[0] = 0;
    }
  });
  await rate(`hash ${name}`, async () => { for (const b of blobs) await codec.hash(b); });
  const sealed = [];
  await rate(`seal ${name}`, async () => { sealed.length = 0; for (const b of blobs) sealed.push((await codec.seal(b, 3)).sealed); });
  await rate(`open ${name}`, async () => { for (let i = 0; i < blobs.length; i++) await codec.open(sealed[i], blobs[i].length, 'bench'); });
  // Format 3: sealed with the id as associated data, opened under it without recomputing the HMAC.
  const ids = await Promise.all(blobs.map((b) => codec.hash(b)));
  const bound = [];
  for (let i = 0; i < blobs.length; i++) bound.push((await codec.seal(blobs[i], 3, ids[i])).sealed);
  await rate(`open bound ${name}`, async () => {
    for (let i = 0; i < blobs.length; i++) await codec.open(bound[i], blobs[i].length, 'bench', { boundId: ids[i], hashPlain: false });
  });
}
