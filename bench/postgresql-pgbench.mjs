// See postgresql-pgbench.sh. Prints wall times and the ratios the issue sets targets for:
//   backup / pg_dump -Fd -j2 (≤ 1.0)   second backup new bytes / repository (< 1 %)   restore / pg_restore -j2 (≤ 0.8)
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { initRepository } from '../dist/repo/index.js';
import { FsBackend } from '../dist/storage/index.js';
import { runBackup, runRestore } from '../dist/engines/engine.js';
import { silentLogger } from '../dist/core/log.js';
import { postgresqlEngine } from '../dist/engines/postgresql/index.js';

const SCALE = Number(process.env.SCALE ?? 30);
const BASE = process.env.PGURL ?? 'postgresql://postgres@127.0.0.1:5432';
const env = { ...process.env, PGHOST: '127.0.0.1', PGPORT: '5432', PGUSER: 'postgres' };
const work = join(process.cwd(), 'bench/.work/postgresql');
rmSync(work, { recursive: true, force: true });
mkdirSync(work, { recursive: true });
const tag = randomBytes(3).toString('hex');
const source = `bench_pg_${tag}`;
const viaPgRestore = `bench_pg_${tag}_pgrestore`;
const viaBunker = `bench_pg_${tag}_bunker`;

const psql = (sql, db = 'postgres') => execFileSync('psql', ['-X', '-q', '-At', '-d', db, '-c', sql], { env, encoding: 'utf8' }).trim();
const sh = (cmd, args) => {
  const r = spawnSync(cmd, args, { env, stdio: ['ignore', 'ignore', 'inherit'] });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status})`);
};
const timed = async (fn) => {
  const t0 = process.hrtime.bigint();
  const value = await fn();
  return { s: Number(process.hrtime.bigint() - t0) / 1e9, value };
};
const mb = (n) => `${(n / 1e6).toFixed(1)} MB`;
const ctx = (extra) => ({ log: silentLogger, progress: () => {}, signal: new AbortController().signal, ...extra });
const engineFor = (db) => {
  const stateDir = join(work, 'state');
  mkdirSync(stateDir, { recursive: true });
  return postgresqlEngine.create('db', postgresqlEngine.configSchema.parse({ url: `${BASE}/${db}` }), { configDir: work, stateDir, log: silentLogger });
};

try {
  console.log(`pgbench -i -s ${SCALE} ...`);
  psql(`CREATE DATABASE ${source}`);
  sh('pgbench', ['-i', '-q', '-s', String(SCALE), source]);
  const dbSize = Number(psql(`SELECT pg_database_size('${source}')`));
  psql('CHECKPOINT');
  console.log(`database: ${mb(dbSize)}`);

  const dumpDir = join(work, 'pg_dump');
  const pgDump = await timed(() => sh('pg_dump', ['-Fd', '-j2', '-f', dumpDir, source]));
  console.log(`pg_dump -Fd -j2:        ${pgDump.s.toFixed(2)} s`);

  const repo = await initRepository({ storage: new FsBackend(join(work, 'repo')), password: 'bench-password-' + tag });
  const backup = () =>
    timed(async () => {
      const engine = engineFor(source);
      const artifact = await runBackup(await engine.openBackup(ctx({ repo, mode: 'live' })));
      await repo.flush();
      return artifact;
    });
  const first = await backup();
  const afterFirst = (await repo.repoStats()).storedBytes;
  console.log(`bunker backup:          ${first.s.toFixed(2)} s   (repository ${mb(afterFirst)}, logical ${mb(first.value.size)})`);
  const second = await backup();
  const afterSecond = (await repo.repoStats()).storedBytes;
  const added = afterSecond - afterFirst;
  console.log(`bunker backup again:    ${second.s.toFixed(2)} s   (added ${mb(added)})`);

  psql(`CREATE DATABASE ${viaPgRestore}`);
  const pgRestore = await timed(() => sh('pg_restore', ['-j2', '-d', viaPgRestore, dumpDir]));
  console.log(`pg_restore -j2:         ${pgRestore.s.toFixed(2)} s`);
  const restore = await timed(async () => {
    const engine = engineFor(viaBunker);
    await runRestore(await engine.openRestore(ctx({ repo, options: {} }), first.value));
  });
  console.log(`bunker restore:         ${restore.s.toFixed(2)} s`);
  const counts = (db) => psql('SELECT count(*) FROM pgbench_accounts', db);
  if (counts(viaBunker) !== counts(source)) throw new Error('restored copy differs from the source');
  await repo.close();

  console.log('');
  console.log(`backup  / pg_dump -Fd -j2   = ${(first.s / pgDump.s).toFixed(2)}   (target ≤ 1.0)`);
  console.log(`second backup new bytes     = ${((100 * added) / afterFirst).toFixed(3)} % of the repository   (target < 1 %)`);
  console.log(`restore / pg_restore -j2    = ${(restore.s / pgRestore.s).toFixed(2)}   (target ≤ 0.8)`);
} finally {
  for (const db of [source, viaPgRestore, viaBunker]) psql(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
}
