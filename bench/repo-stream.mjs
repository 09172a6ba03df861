// Repository stream benchmark (issue 2): the same deterministic ~1.1 GB tar stored through Bunker's
// repository, `restic backup --stdin` and `borg create -`, then stored again unchanged and read back.
// Prints wall time, stored size and peak RSS, and Bunker's ratios against restic and borg: medians of
// RUNS rounds (default 3) in which the tools take turns.
// Usage: bench/repo-stream.sh   (env RUNS=3; runs against dist/; data under bench/.work/repo-stream/)
//        node bench/repo-stream.mjs init|store|read REPO_DIR     (the Bunker client the benchmark runs)
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { median } from './lib/stats.mjs';

const root = resolve(fileURLToPath(import.meta.url), '../..');
const PASSWORD = 'bench-password';

// ---------- the Bunker client (child process, so RSS and wall time are its own) ----------
if (process.argv[2] === 'init' || process.argv[2] === 'store' || process.argv[2] === 'read') {
  const { openRepository, initRepository } = await import(pathToFileURL(join(root, 'dist/repo/index.js')).href);
  const { FsBackend } = await import(pathToFileURL(join(root, 'dist/storage/index.js')).href);
  const storage = new FsBackend(process.argv[3]);
  const options = { storage, password: PASSWORD };
  if (process.argv[2] === 'init') {
    await (await initRepository(options)).close();
    process.exit(0);
  }
  const repo = await openRepository(options);
  if (process.argv[2] === 'store') {
    const w = repo.writeStream({ label: 'mixed.tar' });
    // stdin read 1 MiB at a time (process.stdin reads 64 KiB, which alone costs ~1.2 s per GB here).
    await pipeline(createReadStream(null, { fd: 0, highWaterMark: 1 << 20 }), w);
    const ref = await w.done();
    await repo.saveSnapshot({ version: 1, time: new Date().toISOString(), tags: { bench: 'repo-stream' }, mounts: {},
      services: { tar: { engine: 'command', format: 1, streams: { tar: ref }, trees: {}, meta: {}, size: ref.size, warnings: [] } } });
  } else {
    const snapshots = await repo.listSnapshots();
    const m = await repo.loadSnapshot(snapshots[snapshots.length - 1].id);
    await pipeline(repo.readStream(m.services.tar.streams.tar), process.stdout);
  }
  await repo.close();
  process.exit(0);
}

// ---------- the orchestrator ----------
const work = join(root, 'bench/.work/repo-stream');
mkdirSync(work, { recursive: true });
const tar = join(work, 'mixed.tar');
if (!existsSync(tar)) {
  const { generateMixedTree } = await import(pathToFileURL(join(root, 'bench/lib/mixed-dataset.mjs')).href);
  const tree = join(work, 'mixed');
  console.log('generating the mixed dataset…');
  generateMixedTree(tree);
  const r = spawnSync('tar', ['--sort=name', '--mtime=@0', '--owner=0', '--group=0', '--numeric-owner', '-cf', tar + '.part', '-C', tree, '.'], { stdio: 'inherit' });
  if (r.status !== 0) throw new Error('tar failed');
  spawnSync('mv', [tar + '.part', tar]);
}
const tarSize = statSync(tar).size;

function dirBytes(dir) {
  let total = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    total += e.isDirectory() ? dirBytes(p) : statSync(p).size;
  }
  return total;
}

/** Runs a shell command under /usr/bin/time; returns wall seconds and peak RSS in MB. */
function timed(label, command, env = {}) {
  spawnSync('sync'); // earlier steps' dirty pages are written back before the clock starts, for every tool
  const r = spawnSync('/usr/bin/time', ['-f', '%e %M', 'bash', '-c', command], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
    maxBuffer: 64 * 1024 * 1024,
  });
  const lines = r.stderr.toString().trim().split('\n');
  if (r.status !== 0) throw new Error(`${label} failed (${r.status}): ${lines.slice(-5).join('\n')}`);
  const [secs, kb] = lines[lines.length - 1].split(' ').map(Number);
  console.log(`  ${label.padEnd(28)} ${secs.toFixed(2).padStart(7)} s  ${(kb / 1024).toFixed(0).padStart(5)} MB RSS`);
  return { secs, rssMb: kb / 1024 };
}

// The Bunker client is started as every Bunker process is (bin/bunker, the workers it starts): launchEnv(), NODE_FLAGS.
const { launchEnv, NODE_FLAGS } = await import(pathToFileURL(join(root, 'dist/core/node-flags.js')).href);
const node = [...Object.entries(launchEnv()).map(([k, v]) => `${k}=${v}`), process.execPath, ...NODE_FLAGS].join(' ');
const self = fileURLToPath(import.meta.url);
const tools = {
  bunker: {
    // Untimed, like `restic init` and `borg init`: every timed step opens an existing repository.
    init: (dir) => spawnSync(process.execPath, [self, 'init', dir]),
    store: (dir) => `${node} ${self} store ${dir} < ${tar}`,
    read: (dir) => `${node} ${self} read ${dir} > /dev/null`,
    verify: (dir) => `${node} ${self} read ${dir} | sha256sum`,
    env: {},
  },
  restic: {
    init: (dir) => spawnSync('restic', ['-r', dir, 'init', '--cache-dir', join(work, 'restic-cache')], { env: { ...process.env, RESTIC_PASSWORD: PASSWORD } }),
    store: (dir) => `restic -q -r ${dir} --cache-dir ${join(work, 'restic-cache')} backup --stdin --stdin-filename mixed.tar < ${tar}`,
    read: (dir) => `restic -q -r ${dir} --cache-dir ${join(work, 'restic-cache')} dump latest mixed.tar > /dev/null`,
    verify: (dir) => `restic -q -r ${dir} --cache-dir ${join(work, 'restic-cache')} dump latest mixed.tar | sha256sum`,
    env: { RESTIC_PASSWORD: PASSWORD },
  },
  borg: {
    init: (dir) => spawnSync('borg', ['init', '-e', 'repokey-blake2', dir], { env: { ...process.env, BORG_PASSPHRASE: PASSWORD, BORG_BASE_DIR: join(work, 'borg-base') } }),
    n: 0,
    store(dir) { return `borg create ${dir}::a${++this.n} - < ${tar}`; },
    read(dir) { return `borg extract --stdout ${dir}::a${this.n} > /dev/null`; },
    verify(dir) { return `borg extract --stdout ${dir}::a${this.n} | sha256sum`; },
    env: { BORG_PASSPHRASE: PASSWORD, BORG_BASE_DIR: join(work, 'borg-base') },
  },
};

const expectedSha = spawnSync('bash', ['-c', `sha256sum < ${tar}`]).stdout.toString().split(' ')[0];
console.log(`dataset: ${tar} (${(tarSize / 1e9).toFixed(2)} GB), sha256 ${expectedSha.slice(0, 16)}…`);
console.log(`machine: ${spawnSync('nproc').stdout.toString().trim()} cores, load ${spawnSync('cat', ['/proc/loadavg']).stdout.toString().split(' ').slice(0, 3).join(' ')}`);
// The tools take turns, RUNS times (default 3), so a slow moment of the shared host falls on each of
// them; every figure below is the median of its runs.
const RUNS = Number(process.env.RUNS ?? 3);
const runs = Object.fromEntries(Object.keys(tools).map((name) => [name, []]));
for (let run = 1; run <= RUNS; run++) {
  for (const [name, tool] of Object.entries(tools)) {
    const dir = join(work, `${name}-repo`);
    rmSync(dir, { recursive: true, force: true });
    rmSync(join(work, 'restic-cache'), { recursive: true, force: true });
    rmSync(join(work, 'borg-base'), { recursive: true, force: true });
    console.log(`${name} (run ${run} of ${RUNS})`);
    const init = tool.init(dir);
    if (init && init.status !== 0) throw new Error(`${name} init failed: ${init.stderr}`);
    const store = timed('store', tool.store(dir), tool.env);
    const size = dirBytes(dir);
    const again = timed('store unchanged again', tool.store(dir), tool.env);
    const read = timed('read back', tool.read(dir), tool.env);
    const got = spawnSync('bash', ['-c', tool.verify(dir)], { env: { ...process.env, ...tool.env } }).stdout.toString().split(' ')[0];
    if (got !== expectedSha) throw new Error(`${name} read back different bytes (${got})`);
    console.log(`  ${'stored size'.padEnd(28)} ${(size / 1e6).toFixed(0).padStart(7)} MB  (read back verified)`);
    runs[name].push({ store: store.secs, again: again.secs, read: read.secs, size, rss: Math.max(store.rssMb, again.rssMb, read.rssMb) });
    rmSync(dir, { recursive: true, force: true });
  }
}
const results = Object.fromEntries(
  Object.entries(runs).map(([name, rs]) => [
    name,
    {
      store: median(rs.map((r) => r.store)),
      again: median(rs.map((r) => r.again)),
      read: median(rs.map((r) => r.read)),
      size: median(rs.map((r) => r.size)),
      rss: Math.max(...rs.map((r) => r.rss)), // peak RSS: the worst run, not the median
    },
  ]),
);
const perRun = (key) => runs.bunker.map((r, i) => (r[key] / runs.restic[i][key]).toFixed(2)).join(', ');
console.log(`\nbunker / restic per run: store ${perRun('store')}; unchanged ${perRun('again')}; read back ${perRun('read')}`);

const b = results.bunker;
const row = (label, key, target, fmt) =>
  console.log(`${label.padEnd(24)} ${fmt(b[key]).padStart(10)} ${fmt(results.restic[key]).padStart(10)} ${fmt(results.borg[key]).padStart(10)}` +
    `   ${(b[key] / results.restic[key]).toFixed(2).padStart(5)}×  ${(b[key] / results.borg[key]).toFixed(2).padStart(5)}×   target ${target}`);
const s = (v) => `${v.toFixed(2)} s`;
console.log(`\nmedians of ${RUNS} runs (peak RSS: the highest)\n${''.padEnd(24)} ${'bunker'.padStart(10)} ${'restic'.padStart(10)} ${'borg'.padStart(10)}   vs restic vs borg`);
row('store', 'store', '≤ 0.5× restic', s);
row('store unchanged again', 'again', '≤ 0.5× restic', s);
row('read back', 'read', '≤ 0.5× restic', s);
row('stored size', 'size', '≤ 1.0× restic', (v) => `${(v / 1e6).toFixed(0)} MB`);
row('peak RSS', 'rss', '≤ 250 MB', (v) => `${v.toFixed(0)} MB`);
console.log(JSON.stringify({ tarBytes: tarSize, runs: RUNS, results, perRun: runs }));
