// Files engine pin() on the 1.1 GB mixed tree: how long a safe backup's hold lasts for a mount, with
// nothing changed since prepare() and with 1% of the files changed between prepare() and pin() (pin()
// then stores those files). For comparison, the same run times the stat walk of every entry that pin()
// falls back to when change tracking is unavailable (the way pin() always worked before).
// Run through bench/files-pin.sh (builds dist/ and the native addon).
import { execFileSync } from 'node:child_process';
import { appendFileSync, existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { initRepository } from '../dist/repo/index.js';
import { FsBackend } from '../dist/storage/index.js';
import { filesEngine } from '../dist/engines/files/index.js';
import { runBackup } from '../dist/engines/engine.js';
import { stderrLogger } from '../dist/core/log.js';
import { generateMixedTree } from './lib/mixed-dataset.mjs';
import { median } from './lib/stats.mjs';

const WORK = join(import.meta.dirname, '.work', 'files');
const DATA = join(WORK, 'mixed');
const TREE = join(WORK, 'pin-tree');
const REPO = join(WORK, 'pin-repo');
const ROUNDS = 3;

if (!existsSync(`${DATA}.complete`)) await generateMixedTree(DATA);
rmSync(TREE, { recursive: true, force: true });
rmSync(REPO, { recursive: true, force: true });
execFileSync('cp', ['-a', DATA, TREE]);

const log = stderrLogger('info');
const repo = await initRepository({ storage: new FsBackend(REPO), password: 'bench-password', kdf: 'fast' });
const engine = filesEngine.create('bench', { path: basename(TREE) }, { configDir: dirname(TREE), stateDir: '/tmp', log });
const ctx = (parent) => ({ repo, parent, log, progress() {}, signal: new AbortController().signal, mode: 'safe' });

let t = performance.now();
const parent = await runBackup(await engine.openBackup(ctx()));
console.error(`first backup: ${Math.round(performance.now() - t)} ms`);

/** Appends to 2 text files in each of the 100 folders and rewrites the head of 3 binary files (203 files). */
function changeOnePercent(round) {
  for (const folder of readdirSync(join(TREE, 'text')).sort()) {
    for (const f of readdirSync(join(TREE, 'text', folder)).sort().slice(0, 2)) appendFileSync(join(TREE, 'text', folder, f), `\nround ${round}\n`);
  }
  for (let i = 0; i < 3; i++) {
    const p = join(TREE, 'binary', `blob-00${i}.bin`);
    const buf = readFileSync(p);
    buf.write(`round ${round}`, 0);
    writeFileSync(p, buf);
  }
}

const rows = [];
for (const changed of [false, true]) {
  for (let round = 1; round <= ROUNDS; round++) {
    const session = await engine.openBackup(ctx(parent));
    t = performance.now();
    await session.prepare();
    const prepareMs = performance.now() - t;
    if (changed) changeOnePercent(round);
    t = performance.now();
    await session.pin();
    const pinMs = performance.now() - t;
    // The fallback walk, timed on the same session (a private method: JavaScript does not enforce it).
    t = performance.now();
    const dirty = new Set();
    await session.statWalk('', Buffer.from(TREE), dirty);
    const walkMs = performance.now() - t;
    t = performance.now();
    const artifact = await session.stream();
    const streamMs = performance.now() - t;
    await session.close();
    const row = { changed: changed ? '1%' : 'none', round, prepareMs, pinMs, statWalkMs: walkMs, streamMs, files: artifact.meta.files, load: loadavg()[0] };
    rows.push(row);
    console.error(JSON.stringify(row, (_k, v) => (typeof v === 'number' ? Math.round(v * 10) / 10 : v)));
  }
}
await repo.close();
console.log('| changed since prepare() | pin() (median of 3) | pin() range | stat walk of every entry (fallback) | stream() | load average |');
console.log('|---|---|---|---|---|---|');
for (const c of ['none', '1%']) {
  const r = rows.filter((x) => x.changed === c);
  const pins = r.map((x) => x.pinMs);
  console.log(
    `| ${c === 'none' ? 'nothing' : '1% (203 files)'} | ${median([...pins]).toFixed(1)} ms | ${Math.min(...pins).toFixed(1)}–${Math.max(...pins).toFixed(1)} ms | ${median(r.map((x) => x.statWalkMs)).toFixed(0)} ms | ${median(r.map((x) => x.streamMs)).toFixed(0)} ms | ${r.map((x) => x.load.toFixed(1)).join(', ')} |`,
  );
}
rmSync(TREE, { recursive: true, force: true });
rmSync(REPO, { recursive: true, force: true });
