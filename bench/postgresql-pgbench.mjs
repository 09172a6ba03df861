// See postgresql-pgbench.sh. Prints wall times and the ratios the issue sets targets for:
//   backup / pg_dump -Fd -j2 (≤ 1.0)   second backup new bytes / repository (< 1 %)   restore / pg_restore -j2 (≤ 0.8)
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { loadavg } from 'node:os';
import { initRepository } from '../dist/repo/index.js';
import { FsBackend } from '../dist/storage/index.js';
import { runBackup, runRestore } from '../dist/engines/engine.js';
import { silentLogger } from '../dist/core/log.js';
import { postgresqlEngine } from '../dist/engines/postgresql/index.js';
import { median } from './lib/stats.mjs';

const SCALE = Number(process.env.SCALE ?? 30);
const BASE = process.env.PGURL ?? 'postgresql://postgres@127.0.0.1:5432';
const env = { ...process.env, PGHOST: '127.0.0.1', PGPORT: '5432', PGUSER: 'postgres' };
const work = join(process.cwd(), 'bench/.work/postgresql');
rmSync(work, { recursive: true, force: true });
mkdirSync(work, { recursive: true });
const tag = randomBytes(3).toString('hex');
const source = `bench_pg_${tag}`;

const psql = (sql, db = 'postgres') => execFileSync('psql', ['-X', '-q', '-At', '-d', db, '-c', sql], { env, encoding: 'utf8' }).trim();
const sh = (cmd, args) => {
  const r = spawnSync(cmd, args, { env, stdio: ['ignore', 'ignore', 'inherit'] });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status})`);
};
const mb = (n) => `${(n / 1e6).toFixed(1)} MB`;
const ctx = (extra) => ({ log: silentLogger, progress: () => {}, signal: new AbortController().signal, ...extra });
const engineFor = (db) => {
  const stateDir = join(work, 'state');
  mkdirSync(stateDir, { recursive: true });
  // JOBS= overrides the engine's connection count (default: twice the cores, at most 8).
  const jobs = process.env.JOBS ? { jobs: Number(process.env.JOBS) } : {};
  return postgresqlEngine.create('db', postgresqlEngine.configSchema.parse({ url: `${BASE}/${db}`, ...jobs }), { configDir: work, stateDir, log: silentLogger });
};

// Client-side CPU seconds of this process and the children it has reaped (pg_dump, psql, pg_restore):
// on a shared machine wall times swing, CPU spent is steadier. Server CPU is not included.
const cpu = () => {
  const f = readFileSync('/proc/self/stat', 'utf8').split(') ')[1].split(' ');
  const tick = 100; // USER_HZ
  return (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) / tick;
};
// Server CPU seconds: the postmaster, its live processes and those it has reaped. Only when the server
// runs on this machine and /proc shows it (otherwise NaN); other clients of the server count too.
const postmasterPid = (() => {
  try {
    return Number(readFileSync(join(psql('SHOW data_directory'), 'postmaster.pid'), 'utf8').split('\n')[0]);
  } catch {
    return undefined;
  }
})();
const serverCpu = () => {
  if (!postmasterPid) return NaN;
  const stat = (pid) => readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  const main = stat(postmasterPid);
  let ticks = Number(main[11]) + Number(main[12]) + Number(main[13]) + Number(main[14]);
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      const f = stat(pid);
      if (Number(f[1]) === postmasterPid) ticks += Number(f[11]) + Number(f[12]);
    } catch {
      // gone meanwhile
    }
  }
  return ticks / 100;
};
const timed = async (fn) => {
  // Earlier steps' dirty pages (pg_dump's directory, a restore's relations) are written back before
  // the clock starts, for every tool, so no step pays for the write-back of the one before it.
  execFileSync('sync');
  const t0 = process.hrtime.bigint();
  const c0 = cpu();
  const s0 = serverCpu();
  const value = await fn();
  return { s: Number(process.hrtime.bigint() - t0) / 1e9, cpu: cpu() - c0, server: serverCpu() - s0, value };
};
const RUNS = Number(process.env.RUNS ?? 3);
const created = [source];

try {
  console.log(`pgbench -i -s ${SCALE} ...`);
  psql(`CREATE DATABASE ${source}`);
  sh('pgbench', ['-i', '-q', '-s', String(SCALE), source]);
  const dbSize = Number(psql(`SELECT pg_database_size('${source}')`));
  psql('CHECKPOINT');
  console.log(`database: ${mb(dbSize)}, ${RUNS} runs; each run measures the tools side by side`);
  const ratios = { backup: [], added: [], restore: [] };
  const row = (name, t, extra = '') =>
    console.log(`  ${name.padEnd(22)} ${t.s.toFixed(2).padStart(7)} s wall  ${t.cpu.toFixed(2).padStart(6)} s client CPU  ${t.server.toFixed(2).padStart(6)} s server CPU${extra}`);

  for (let run = 1; run <= RUNS; run++) {
    console.log(`run ${run}   (load average ${loadavg().map((l) => l.toFixed(2)).join(', ')})`);
    const dumpDir = join(work, 'pg_dump');
    rmSync(dumpDir, { recursive: true, force: true });
    psql('CHECKPOINT');
    const pgDump = await timed(() => sh('pg_dump', ['-Fd', '-j2', '-f', dumpDir, source]));
    row('pg_dump -Fd -j2', pgDump);

    const repoDir = join(work, 'repo');
    rmSync(repoDir, { recursive: true, force: true });
    const repo = await initRepository({ storage: new FsBackend(repoDir), password: 'bench-password-' + tag });
    const backup = () =>
      timed(async () => {
        const engine = engineFor(source);
        const artifact = await runBackup(await engine.openBackup(ctx({ repo, mode: 'live' })));
        await repo.flush();
        return artifact;
      });
    const first = await backup();
    const afterFirst = (await repo.repoStats()).storedBytes;
    row('bunker backup', first, `   (repository ${mb(afterFirst)}, logical ${mb(first.value.size)})`);
    const second = await backup();
    const added = (await repo.repoStats()).storedBytes - afterFirst;
    row('bunker backup again', second, `   (added ${mb(added)})`);

    const viaPgRestore = `bench_pg_${tag}_pgrestore_${run}`;
    const viaBunker = `bench_pg_${tag}_bunker_${run}`;
    created.push(viaPgRestore, viaBunker);
    psql(`CREATE DATABASE ${viaPgRestore}`);
    // Each restore starts from a fresh checkpoint: otherwise the WAL the first one writes (~450 MB, about
    // half of max_wal_size) sets off a checkpoint in the middle of whichever runs second.
    psql('CHECKPOINT');
    const pgRestore = await timed(() => sh('pg_restore', ['-j2', '-d', viaPgRestore, dumpDir]));
    row('pg_restore -j2', pgRestore);
    psql('CHECKPOINT');
    const restore = await timed(async () => {
      const engine = engineFor(viaBunker);
      await runRestore(await engine.openRestore(ctx({ repo, options: {} }), first.value));
    });
    row('bunker restore', restore);
    const counts = (db) => psql('SELECT count(*) FROM pgbench_accounts', db);
    if (counts(viaBunker) !== counts(source)) throw new Error('restored copy differs from the source');
    for (const db of [viaPgRestore, viaBunker]) psql(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
    await repo.close();
    ratios.backup.push(first.s / pgDump.s);
    ratios.added.push((100 * added) / afterFirst);
    ratios.restore.push(restore.s / pgRestore.s);
    console.log(`  ratios: backup ${ratios.backup.at(-1).toFixed(2)}, second-backup new bytes ${ratios.added.at(-1).toFixed(3)} %, restore ${ratios.restore.at(-1).toFixed(2)}`);
    // Client + server CPU: steadier than wall time on a shared machine; shows whether we do more work.
    const cpuTotal = (t) => t.cpu + t.server;
    console.log(`  CPU ratios (client + server): backup ${(cpuTotal(first) / cpuTotal(pgDump)).toFixed(2)}, restore ${(cpuTotal(restore) / cpuTotal(pgRestore)).toFixed(2)}`);
  }

  const fmt = (xs, d = 2) => `${median(xs).toFixed(d)}   (runs: ${xs.map((x) => x.toFixed(d)).join(', ')})`;
  console.log('');
  console.log(`median backup  / pg_dump -Fd -j2 = ${fmt(ratios.backup)}   target ≤ 1.0`);
  console.log(`median second backup new bytes   = ${fmt(ratios.added, 3)} % of the repository   target < 1 %`);
  console.log(`median restore / pg_restore -j2  = ${fmt(ratios.restore)}   target ≤ 0.8`);
} finally {
  for (const db of created) psql(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
}
