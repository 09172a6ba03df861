// Deterministic ~1.1 GB "mixed" dataset shared by the repository and mounts benchmarks:
//   300 × 2 MiB incompressible files, 20,000 text files of 4–20 KB in 100 folders, one ~200 MB
//   SQL-like text file. Same bytes on every run and machine (seeded AES-CTR and a seeded PRNG).
// Usage: node bench/lib/mixed-dataset.mjs DIR   (skips the work when DIR.complete exists)
import { createCipheriv } from 'node:crypto';
import { mkdirSync, writeFileSync, existsSync, openSync, writeSync, closeSync } from 'node:fs';
import { join } from 'node:path';

/** Incompressible bytes: AES-256-CTR keystream with a fixed key, counter derived from `index`. */
function randomBlock(index, size) {
  const key = Buffer.alloc(32, 7);
  const iv = Buffer.alloc(16);
  iv.writeUInt32BE(index, 0); // high bytes: each file its own keystream (CTR counts up in the low bytes)
  return createCipheriv('aes-256-ctr', key, iv).update(Buffer.alloc(size));
}

/** xorshift32: a small seeded PRNG for the text parts. */
function prng(seed) {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    return x / 0x100000000;
  };
}

const WORDS = ('backup restore snapshot environment service mount chunk pack index tree stream repository ' +
  'encrypt compress verify consistent database table row column value order customer invoice upload ' +
  'session queue cache request response latency throughput storage location replica quorum the a of to ' +
  'and in is for on with as by at from that this be are was were it not or have has').split(' ');

function text(rand, bytes) {
  const parts = [];
  let n = 0;
  while (n < bytes) {
    const w = WORDS[Math.floor(rand() * WORDS.length)];
    const sep = rand() < 0.08 ? '.\n' : ' ';
    parts.push(w, sep);
    n += w.length + sep.length;
  }
  return parts.join('').slice(0, bytes);
}

export function generateMixedTree(dir, { binaryFiles = 300, textFiles = 20000, sqlBytes = 200 * 1024 * 1024 } = {}) {
  if (existsSync(`${dir}.complete`)) return dir;
  mkdirSync(join(dir, 'binary'), { recursive: true });
  for (let i = 0; i < binaryFiles; i++) {
    writeFileSync(join(dir, 'binary', `blob-${String(i).padStart(3, '0')}.bin`), randomBlock(i, 2 * 1024 * 1024));
  }
  const rand = prng(42);
  for (let i = 0; i < textFiles; i++) {
    const folder = join(dir, 'text', `folder-${String(i % 100).padStart(2, '0')}`);
    if (i < 100) mkdirSync(folder, { recursive: true });
    const size = 4096 + Math.floor(rand() * (20480 - 4096));
    writeFileSync(join(folder, `doc-${String(i).padStart(5, '0')}.txt`), text(rand, size));
  }
  const fd = openSync(join(dir, 'dump.sql'), 'w');
  const srand = prng(7);
  let written = 0;
  let id = 1;
  while (written < sqlBytes) {
    const rows = [];
    for (let r = 0; r < 200; r++, id++) {
      const amount = (srand() * 10000).toFixed(2);
      const name = text(srand, 12 + Math.floor(srand() * 20)).replace(/[\n']/g, ' ');
      rows.push(`(${id}, '${name}', ${amount}, '2026-${String(1 + (id % 12)).padStart(2, '0')}-${String(1 + (id % 28)).padStart(2, '0')}')`);
    }
    const line = `INSERT INTO orders (id, customer, amount, created) VALUES ${rows.join(',\n  ')};\n`;
    writeSync(fd, line);
    written += Buffer.byteLength(line);
  }
  closeSync(fd);
  writeFileSync(`${dir}.complete`, ''); // beside the tree, so the tree holds exactly the dataset
  return dir;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const dir = process.argv[2];
  if (!dir) {
    console.error('usage: node bench/lib/mixed-dataset.mjs DIR');
    process.exit(2);
  }
  generateMixedTree(dir);
  console.log(dir);
}
