// See mariadb-sysbench.sh. Prints wall times and the ratios the issue sets targets for, of the
// medians of RUNS alternated runs:
//   backup / mariadb-dump --single-transaction (≤ 1.0)   restore / mariadb < dump.sql (≤ 0.4)
import { execFileSync, spawnSync } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { randomBytes } from 'node:crypto';
import { initRepository } from '../dist/repo/index.js';
import { FsBackend } from '../dist/storage/index.js';
import { runBackup, runRestore } from '../dist/engines/engine.js';
import { silentLogger } from '../dist/core/log.js';
import { mariadbEngine } from '../dist/engines/mariadb/index.js';
import { median } from './lib/stats.mjs';

const TABLES = Number(process.env.TABLES ?? 8);
const TABLE_SIZE = Number(process.env.TABLE_SIZE ?? 250000);
const JOBS = process.env.JOBS ? Number(process.env.JOBS) : undefined;
const RUNS = Number(process.env.RUNS ?? 3);
const conn = ['-h', '127.0.0.1', '-P', '3306', '-u', 'root'];
const work = join(process.cwd(), 'bench/.work/mariadb');
rmSync(work, { recursive: true, force: true });
mkdirSync(work, { recursive: true });
const tag = randomBytes(3).toString('hex');
const source = `bench_mdb_${tag}`;
const viaClient = `bench_mdb_${tag}_client`;
const viaBunker = `bench_mdb_${tag}_bunker`;

const sql = (text, db) => execFileSync('mariadb', [...conn, '-N', '-B', ...(db ? [db] : []), '-e', text], { encoding: 'utf8' }).trim();
const sh = (cmd, args, io = {}) => {
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'ignore', 'inherit'], ...io });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status})`);
};
// CPU-seconds beside each wall time, since wall times on a shared machine are noisy: this process
// (Bunker), the client tools it ran and waited for, and the local server (when its /proc is visible).
const TICK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }));
const serverPid = (() => {
  const r = spawnSync('pgrep', ['-x', 'mariadbd'], { encoding: 'utf8' });
  return r.status === 0 ? Number(r.stdout.trim().split('\n')[0]) : undefined;
})();
const ticks = (pid, fields) => readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ').slice(...fields).reduce((a, b) => a + Number(b), 0) / TICK;
const cpuNow = () => {
  const u = process.cpuUsage();
  return { self: (u.user + u.system) / 1e6, children: ticks('self', [13, 15]), server: serverPid ? ticks(serverPid, [11, 13]) : NaN };
};
const timed = async (fn) => {
  // Earlier steps' dirty pages (mariadb-dump's 400 MB file, a restore's tablespaces) are written back
  // before the clock starts, for every tool: otherwise the write-back of one tool's output runs
  // during, and is charged to, whichever step comes next (it added 0.3-0.7 CPU-s to Bunker's backup).
  execFileSync('sync');
  const c0 = cpuNow();
  const t0 = process.hrtime.bigint();
  const value = await fn();
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  const c1 = cpuNow();
  const cpu = `CPU-s: bunker ${(c1.self - c0.self).toFixed(2)}, client tools ${(c1.children - c0.children).toFixed(2)}, server ${(c1.server - c0.server).toFixed(2)}`;
  return { s, value, cpu };
};
const mb = (n) => `${(n / 1e6).toFixed(1)} MB`;
const ctx = (extra) => ({ log: silentLogger, progress: () => {}, signal: new AbortController().signal, ...extra });
const engineFor = (db) =>
  mariadbEngine.create('db', mariadbEngine.configSchema.parse({ url: `mysql://root@127.0.0.1:3306/${db}`, ...(JOBS ? { jobs: JOBS } : {}) }), {
    configDir: work,
    stateDir: work,
    log: silentLogger,
  });
const checksums = (db) => sql(`CHECKSUM TABLE ${Array.from({ length: TABLES }, (_, i) => `sbtest${i + 1}`).join(', ')}`, db).replaceAll(db, 'DB');

try {
  console.log(`sysbench oltp_read_write --tables=${TABLES} --table-size=${TABLE_SIZE} prepare ...`);
  sql(`CREATE DATABASE ${source}`);
  sh('sysbench', ['oltp_read_write', '--db-driver=mysql', '--mysql-host=127.0.0.1', '--mysql-user=root', '--mysql-password=', `--mysql-db=${source}`,
    `--tables=${TABLES}`, `--table-size=${TABLE_SIZE}`, 'prepare']);
  const size = Number(sql(`SELECT SUM(DATA_LENGTH + INDEX_LENGTH) FROM information_schema.TABLES WHERE TABLE_SCHEMA = '${source}'`));
  console.log(`database: ${mb(size)} (data + indexes)`);

  const dumpFile = join(work, 'dump.sql');
  const runDump = () =>
    timed(() => {
      const fd = openSync(dumpFile, 'w');
      try {
        sh('mariadb-dump', [...conn, '--single-transaction', '--routines', '--triggers', '--events', source], { stdio: ['ignore', fd, 'inherit'] });
      } finally {
        closeSync(fd);
      }
    });
  /** A first backup into a new, empty repository (a second one into the same repository deduplicates). */
  const runBackupInto = async (repoDir) => {
    rmSync(repoDir, { recursive: true, force: true });
    const repo = await initRepository({ storage: new FsBackend(repoDir), password: 'bench-password-' + tag, kdf: 'fast' });
    const backup = () =>
      timed(async () => {
        const artifact = await runBackup(await engineFor(source).openBackup(ctx({ repo, mode: 'live' })));
        await repo.flush();
        return artifact;
      });
    return { repo, backup };
  };

  // The tools alternate, RUNS times, so a slow moment of the shared host falls on both; the ratios
  // are of the medians.
  const dumps = [];
  const backups = [];
  let kept; // the last run's repository and artifact: for the unchanged backup and the restores
  for (let run = 1; run <= RUNS; run++) {
    const dump = await runDump();
    const { repo, backup } = await runBackupInto(join(work, `repo-${run}`));
    const first = await backup();
    console.log(`run ${run}: mariadb-dump --single-transaction ${dump.s.toFixed(2)} s (${mb(statSync(dumpFile).size)}; ${dump.cpu})`);
    console.log(`run ${run}: bunker backup                     ${first.s.toFixed(2)} s (stored ${mb(repo.stats().storedBytes)}, consistent point ${first.value.meta.pinMs} ms; ${first.cpu})`);
    dumps.push(dump.s);
    backups.push(first.s);
    if (kept) {
      await kept.repo.close();
      rmSync(join(work, `repo-${run - 1}`), { recursive: true, force: true });
    }
    kept = { repo, backup, first };
  }
  const afterFirst = kept.repo.stats().storedBytes;
  const second = await kept.backup();
  const added = kept.repo.stats().storedBytes - afterFirst;
  console.log(`bunker backup, unchanged, again:   ${second.s.toFixed(2)} s (new bytes ${mb(added)}; ${second.cpu})`);

  // What the engine costs on its own: the same backup into a writer that discards the bytes, so the
  // difference to the real backup is the repository's chunking, compression and encryption.
  const discard = {
    writeStream() {
      let size = 0;
      let finished;
      const done = new Promise((resolve) => (finished = resolve));
      const w = new Writable({ write: (c, _e, cb) => ((size += c.length), cb()), final: (cb) => (finished({ size, chunks: [] }), cb()) });
      return Object.assign(w, { done: () => done, storedBytes: 0 });
    },
    storeBuffer: async (data) => ({ size: data.length, chunks: [] }),
    putTree: async () => '',
    hasBlob: () => false,
    stats: () => ({ bytes: 0, storedBytes: 0, chunks: 0, newChunks: 0 }),
  };
  const engineOnly = await timed(async () => runBackup(await engineFor(source).openBackup(ctx({ repo: discard, mode: 'live' }))));
  console.log(`bunker backup, bytes discarded:    ${engineOnly.s.toFixed(2)} s (engine alone, no repository; ${engineOnly.cpu})`);

  const clientRestores = [];
  const bunkerRestores = [];
  let same = true;
  for (let run = 1; run <= RUNS; run++) {
    for (const db of [viaClient, viaBunker]) sql(`DROP DATABASE IF EXISTS ${db}`);
    sql(`CREATE DATABASE ${viaClient}`);
    const clientRestore = await timed(() => {
      const fd = openSync(dumpFile, 'r');
      try {
        sh('mariadb', [...conn, viaClient], { stdio: [fd, 'ignore', 'inherit'] });
      } finally {
        closeSync(fd);
      }
    });
    console.log(`run ${run}: mariadb < dump.sql                ${clientRestore.s.toFixed(2)} s (${clientRestore.cpu})`);
    const bunkerRestore = await timed(async () => {
      await runRestore(await engineFor(viaBunker).openRestore(ctx({ repo: kept.repo, options: {} }), kept.first.value));
    });
    console.log(`run ${run}: bunker restore                    ${bunkerRestore.s.toFixed(2)} s (${bunkerRestore.cpu})`);
    clientRestores.push(clientRestore.s);
    bunkerRestores.push(bunkerRestore.s);
    same &&= checksums(source) === checksums(viaBunker) && checksums(source) === checksums(viaClient);
  }
  console.log(`load average after the runs: ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`);
  console.log(`restored tables match the source (CHECKSUM TABLE, every run): ${same ? 'yes' : 'NO'}`);
  const ratios = (a, b) => a.map((x, i) => (x / b[i]).toFixed(2)).join(', ');
  console.log('');
  console.log(`backup  / mariadb-dump --single-transaction = ${(median(backups) / median(dumps)).toFixed(2)}  (target <= 1.0; medians of ${RUNS}; per run ${ratios(backups, dumps)})`);
  console.log(`restore / mariadb < dump.sql                = ${(median(bunkerRestores) / median(clientRestores)).toFixed(2)}  (target <= 0.4; medians of ${RUNS}; per run ${ratios(bunkerRestores, clientRestores)})`);
  console.log(`second backup new bytes / first stored      = ${((100 * added) / afterFirst).toFixed(2)} %`);
  console.log(`backup without repository / mariadb-dump    = ${(engineOnly.s / median(dumps)).toFixed(2)}`);
  await kept.repo.close();
  if (!same) process.exitCode = 1;
} finally {
  for (const db of [source, viaClient, viaBunker]) sql(`DROP DATABASE IF EXISTS ${db}`);
  rmSync(work, { recursive: true, force: true });
}
