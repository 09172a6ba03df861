// The per-byte work a first backup of the mounts bench's tree cannot avoid, measured one thread at a
// time with the repository codec's own calls: zstd at the default level and AES-GCM over the SQL file
// (in 1 MiB chunks) and over each text file, sampling and AES over the binaries, HMAC ids over every
// byte. Compared with the files bench's first-backup target (0.25× restic) as CPU-seconds on this
// machine's cores. Usage: node bench/first-backup-floor.mjs [RESTIC_SECONDS]   (after bench/files-tree.sh
// has made bench/.work/files/mixed; RESTIC_SECONDS: restic's first backup there, from that bench)
import { randomBytes } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const root = join(import.meta.dirname, '..');
const { codecAddon } = await import(join(root, 'dist/repo/native-codec.js'));
const { DEFAULT_COMPRESSION_LEVEL } = await import(join(root, 'dist/repo/index.js'));
const tree = join(root, 'bench/.work/files/mixed');
const codec = codecAddon();
const keys = codec.keys(randomBytes(32), randomBytes(32));
const MiB = 1 << 20;
const files = (dir) => readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? files(join(dir, e.name)) : [readFileSync(join(dir, e.name))]));
const sql = readFileSync(join(tree, 'dump.sql'));
const texts = files(join(tree, 'text'));
const binaries = files(join(tree, 'binary'));
const chunks = (b) => Array.from({ length: Math.ceil(b.length / MiB) }, (_, i) => b.subarray(i * MiB, (i + 1) * MiB));
const seconds = (work) => {
  const started = process.hrtime.bigint();
  work();
  return Number(process.hrtime.bigint() - started) / 1e9;
};
const seal = (list) => seconds(() => list.forEach((b) => codec.sealSync(keys, b, DEFAULT_COMPRESSION_LEVEL)));
const parts = {
  'zstd + AES, SQL file': seal(chunks(sql)),
  'zstd + AES, text files': seal(texts),
  'sampling + AES, binaries': seal(binaries.flatMap(chunks)),
  'HMAC ids, every byte': seconds(() => [sql, ...texts, ...binaries].flatMap(chunks).forEach((b) => codec.hashSync(keys, b))),
};
let total = 0;
for (const [name, s] of Object.entries(parts)) {
  total += s;
  console.log(`${name.padEnd(26)} ${s.toFixed(2)} CPU-s`);
}
console.log(`${'total'.padEnd(26)} ${total.toFixed(2)} CPU-s (the chunker's scan, file reads and pack writes come on top)`);
const restic = Number(process.argv[2]);
if (restic > 0) {
  const budget = 0.25 * restic * availableParallelism();
  console.log(`0.25 × restic's ${restic} s on ${availableParallelism()} cores, every core busy throughout: ${budget.toFixed(2)} CPU-s`);
}
