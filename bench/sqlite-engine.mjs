// See sqlite-engine.sh. Prints median wall times and the ratios:
//   Bunker backup / (sqlite3 .backup + restic backup of the copy), Bunker backup / sqlite3 .backup,
//   Bunker restore / restic restore, restore / backup
// and, with a writer committing throughout, pin() time and the writer's worst commit latency during a
// backup compared with the same writer alone.
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { median } from './lib/stats.mjs';

const SELF = fileURLToPath(import.meta.url);

if (process.argv[2] === '--writer') await writer(process.argv[3]);
else await main();

/** The application stand-in: one small transaction every ~2 ms, reporting commit latencies on SIGTERM. */
async function writer(file) {
  const db = new Database(file, { timeout: 60_000 });
  db.pragma('synchronous = NORMAL');
  const insert = db.prepare('INSERT INTO items (name, body) VALUES (?, ?)');
  const bump = db.prepare('UPDATE totals SET n = n + 1 WHERE id = 1');
  const commit = db.transaction((i) => (insert.run(`w${i}`, 'x'.repeat(200)), bump.run()));
  const latencies = [];
  let stop = false;
  process.on('SIGTERM', () => (stop = true));
  process.stdout.write('ready\n');
  for (let i = 0; !stop; i++) {
    const t = process.hrtime.bigint();
    commit(i);
    latencies.push(Number(process.hrtime.bigint() - t) / 1e6);
    await new Promise((r) => setTimeout(r, 2));
  }
  db.close();
  latencies.sort((a, b) => a - b);
  const p = (q) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))];
  process.stdout.write(JSON.stringify({ commits: latencies.length, p50: p(0.5), p99: p(0.99), max: latencies.at(-1) }) + '\n');
  process.exit(0);
}

async function main() {
  const { initRepository } = await import('../dist/repo/index.js');
  const { FsBackend } = await import('../dist/storage/index.js');
  const { runBackup, runRestore } = await import('../dist/engines/engine.js');
  const { silentLogger } = await import('../dist/core/log.js');
  const { sqliteEngine } = await import('../dist/engines/sqlite/index.js');

  const SIZE_MB = Number(process.env.SIZE_MB ?? 256);
  const RUNS = Number(process.env.RUNS ?? 3);
  const work = join(process.cwd(), 'bench/.work/sqlite');
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  const secs = (ms) => (ms / 1000).toFixed(2) + ' s';
  const time = async (fn) => {
    const t = performance.now();
    await fn();
    return performance.now() - t;
  };

  function makeDb(file, mode) {
    const db = new Database(file);
    db.pragma(`journal_mode = ${mode}`);
    db.exec(`CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, body TEXT);
             CREATE INDEX items_name ON items (name);
             CREATE TABLE totals (id INTEGER PRIMARY KEY, n INTEGER); INSERT INTO totals VALUES (1, 0);`);
    const insert = db.prepare('INSERT INTO items (name, body) VALUES (?, ?)');
    // ~185 bytes a row on disk: a name, some repeated text and a pseudo-random hex tail (compresses ~2:1).
    let x = 12345;
    const rows = Math.round((SIZE_MB * 1024 * 1024) / 185);
    for (let start = 0; start < rows; start += 50_000) {
      db.transaction(() => {
        for (let i = start; i < Math.min(rows, start + 50_000); i++) {
          let hex = '';
          for (let k = 0; k < 12; k++) ((x ^= x << 13), (x ^= x >>> 17), (x ^= x << 5), (hex += (x >>> 0).toString(16).padStart(8, '0')));
          insert.run(`item-${i}`, `order line for customer ${i % 9973}, status shipped; ${hex}`);
        }
      })();
    }
    db.close();
    return statSync(file).size;
  }

  const env = (dir) => ({ configDir: dir, stateDir: join(dir, '.bunker'), log: silentLogger });
  const ctx = (repo) => ({ repo, log: silentLogger, progress: () => {}, signal: new AbortController().signal, mode: 'safe' });
  const rctx = (repo) => ({ repo, log: silentLogger, progress: () => {}, signal: new AbortController().signal, options: {} });
  const freshRepo = async (name) => {
    const dir = join(work, name);
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    return initRepository({ storage: new FsBackend(dir), password: 'bench', kdf: 'fast' });
  };

  const main = join(work, 'main');
  const staging = join(work, 'staging');
  mkdirSync(main, { recursive: true });
  mkdirSync(staging, { recursive: true });
  const file = join(main, 'app.sqlite');
  const size = makeDb(file, 'wal');
  console.log(`database: ${(size / 1048576).toFixed(0)} MiB, WAL mode, ${RUNS} runs each`);

  // 1. Backup: Bunker (into a fresh repository each run) vs sqlite3 .backup, alternating.
  const cli = [];
  const restic = [];
  const resticRestores = [];
  const ours = [];
  const restores = [];
  const resticEnv = { ...process.env, RESTIC_PASSWORD: 'bench', RESTIC_REPOSITORY: join(work, 'restic') };
  for (let run = 0; run < RUNS; run++) {
    // The tools' way: sqlite3 .backup to a file, then restic backs the file up (and restores it).
    rmSync(join(work, 'cli'), { recursive: true, force: true });
    rmSync(join(work, 'restic'), { recursive: true, force: true });
    rmSync(join(work, 'restic-out'), { recursive: true, force: true });
    mkdirSync(join(work, 'cli'));
    execFileSync('restic', ['init', '--quiet'], { env: resticEnv });
    cli.push(await time(() => execFileSync('sqlite3', [file, `.backup '${join(work, 'cli', 'app.sqlite')}'`])));
    restic.push(await time(() => execFileSync('restic', ['backup', '--quiet', join(work, 'cli')], { env: resticEnv })));
    resticRestores.push(await time(() => execFileSync('restic', ['restore', 'latest', '--quiet', '--target', join(work, 'restic-out')], { env: resticEnv })));
    const repo = await freshRepo('repo');
    let artifact;
    ours.push(await time(async () => {
      artifact = await runBackup(await sqliteEngine.create('app', { path: 'app.sqlite' }, env(main)).openBackup(ctx(repo)));
      await repo.flush();
    }));
    rmSync(join(staging, 'app.sqlite'), { force: true });
    restores.push(await time(async () => {
      await runRestore(await sqliteEngine.create('app', { path: 'app.sqlite' }, env(staging)).openRestore(rctx(repo), artifact));
    }));
    await repo.close();
  }
  const toolBackup = median(cli) + median(restic);
  console.log(`sqlite3 .backup                 ${secs(median(cli))}`);
  console.log(`  + restic backup of the copy   ${secs(median(restic))}`);
  console.log(`bunker backup                   ${secs(median(ours))}   bunker / (sqlite3 .backup + restic) = ${(median(ours) / toolBackup).toFixed(2)}, bunker / sqlite3 .backup = ${(median(ours) / median(cli)).toFixed(2)}`);
  console.log(`restic restore                  ${secs(median(resticRestores))}`);
  console.log(`bunker restore (verified, swap) ${secs(median(restores))}   bunker / restic restore = ${(median(restores) / median(resticRestores)).toFixed(2)}, restore / backup = ${(median(restores) / median(ours)).toFixed(2)}`);

  // 2. What the application feels: the same writer alone, then during a safe-mode backup.
  async function startWriter(db) {
    const child = spawn(process.execPath, [SELF, '--writer', db], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    while (!out.includes('ready')) await new Promise((r) => setTimeout(r, 10));
    return async () => {
      child.kill('SIGTERM');
      await once(child, 'exit');
      return JSON.parse(out.trim().split('\n').at(-1));
    };
  }
  const fmt = (r) => `p50 ${r.p50.toFixed(2)} ms, p99 ${r.p99.toFixed(2)} ms, max ${r.max.toFixed(1)} ms (${r.commits} commits)`;
  for (const mode of ['wal', 'delete']) {
    const db = join(main, `writer-${mode}.sqlite`);
    if (mode === 'wal') execFileSync('cp', [file, db]);
    else {
      execFileSync('sqlite3', [file, `VACUUM INTO '${db}'`]);
      const d = new Database(db);
      d.pragma('journal_mode = delete');
      d.close();
    }
    const repo = await freshRepo(`repo-${mode}`);
    const alone = await startWriter(db);
    const window = median(ours);
    await new Promise((r) => setTimeout(r, window));
    const baseline = await alone();
    const during = await startWriter(db);
    const session = await sqliteEngine.create('app', { path: `writer-${mode}.sqlite` }, env(main)).openBackup(ctx(repo));
    let pinMs;
    const took = await time(async () => {
      await session.prepare();
      pinMs = await time(() => session.pin());
      await session.stream();
      await session.close();
    });
    const busy = await during();
    await repo.close();
    console.log(`${mode.padEnd(6)} pin() ${pinMs.toFixed(1)} ms, backup ${secs(took)}`);
    console.log(`       writer alone:         ${fmt(baseline)}`);
    console.log(`       writer during backup: ${fmt(busy)}`);
  }
  rmSync(work, { recursive: true, force: true });
}
