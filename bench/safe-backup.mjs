// Safe backup under load (issue 8): the counter app (test/safe-backup/counter-app.mjs) behind the real
// `bunker gateway`, ~200 requests/s, while `bunker backup:create` takes a safe backup of an environment
// with PostgreSQL (pgbench scale 30), Redis (1,000,000 keys), SQLite and the 1.1 GB mixed tree as its
// mount. Reports the pause (hold to release), the latency added to requests that arrived during the
// hold (p50, p99, max, against the median latency outside the backup), and failed/dropped requests.
// Usage: bash bench/safe-backup.sh   (env: BENCH_PG_SCALE=30 BENCH_REDIS_KEYS=1000000 BENCH_RPS=200)
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import Database from 'better-sqlite3';
import { Redis } from 'ioredis';
import pg from 'pg';

const ROOT = new URL('..', import.meta.url).pathname;
const WORK = join(ROOT, 'bench/.work/safe-backup');
const SCALE = Number(process.env.BENCH_PG_SCALE ?? 30);
const KEYS = Number(process.env.BENCH_REDIS_KEYS ?? 1_000_000);
const RPS = Number(process.env.BENCH_RPS ?? 200);
const REDIS_DB = 10;
const PG_DB = 'bench_safe_backup';
const PG_URL = 'postgresql://postgres@127.0.0.1:5432';
const log = (m) => console.log(`[${new Date().toISOString().slice(11, 19)}] ${m}`);

async function pgQuery(db, text) {
  const c = new pg.Client({ connectionString: `${PG_URL}/${db}` });
  await c.connect();
  try {
    return await c.query(text);
  } finally {
    await c.end();
  }
}

// Redis db 10-11 are shared with test/safe-backup: take the same cross-process lock (a dead holder's is taken over).
const LOCK = join(tmpdir(), 'bunker-test-redis-10-11.lock');
for (;;) {
  try {
    mkdirSync(LOCK);
    writeFileSync(join(LOCK, 'pid'), String(process.pid));
    break;
  } catch {
    let alive = true;
    try {
      process.kill(Number(readFileSync(join(LOCK, 'pid'), 'utf8')), 0);
    } catch (e) {
      alive = e.code !== 'ESRCH';
    }
    if (!alive) rmSync(LOCK, { recursive: true, force: true });
    else await new Promise((r) => setTimeout(r, 500));
  }
}
process.on('exit', () => rmSync(LOCK, { recursive: true, force: true }));

// ---- data ----------------------------------------------------------------------------------------
rmSync(join(WORK, 'project'), { recursive: true, force: true });
mkdirSync(join(WORK, 'project'), { recursive: true });
const mount = join(WORK, 'mount');
if (!existsSync(`${mount}.complete`)) {
  rmSync(mount, { recursive: true, force: true });
  const shared = join(ROOT, 'bench/.work/files/mixed');
  // A real copy, not hard links: files with links outside the mount are re-examined by every pin()
  // (a write through the other name raises no watch event here), which would measure a rare case.
  if (existsSync(`${shared}.complete`)) execFileSync('cp', ['-a', shared, mount]);
  else execFileSync(process.execPath, [join(ROOT, 'bench/lib/mixed-dataset.mjs'), mount], { stdio: 'inherit' });
  writeFileSync(`${mount}.complete`, '');
}
rmSync(join(mount, 'hits.log'), { force: true });
writeFileSync(join(mount, 'hits.log'), '');

log(`PostgreSQL: pgbench -i -s ${SCALE}`);
await pgQuery('postgres', `DROP DATABASE IF EXISTS ${PG_DB} WITH (FORCE)`);
await pgQuery('postgres', `CREATE DATABASE ${PG_DB}`);
execFileSync('pgbench', ['-i', '-q', '-s', String(SCALE), '-h', '127.0.0.1', '-U', 'postgres', PG_DB], { stdio: ['ignore', 'ignore', 'inherit'] });
await pgQuery(PG_DB, 'CREATE TABLE counter (n bigint NOT NULL); INSERT INTO counter VALUES (0)');

log(`Redis: ${KEYS} keys in db ${REDIS_DB}`);
const redis = new Redis(`redis://127.0.0.1:6379/${REDIS_DB}`);
await redis.flushdb();
for (let i = 0; i < KEYS; i += 10_000) {
  const p = redis.pipeline();
  for (let j = i; j < Math.min(KEYS, i + 10_000); j++) p.set(`key:${j}`, `value-${j}-${'x'.repeat(40)}`);
  await p.exec();
}
redis.disconnect();

const sqlitePath = join(WORK, 'project/app.sqlite');
const sdb = new Database(sqlitePath);
sdb.pragma('journal_mode = WAL');
sdb.exec('CREATE TABLE counter (n INTEGER NOT NULL); INSERT INTO counter VALUES (0)');
sdb.close();

// ---- app, gateway, config -------------------------------------------------------------------------
let gatewayLog = '';
function startProcess(args, env, pattern) {
  const child = spawn(process.execPath, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise((resolve, reject) => {
    let out = '';
    const watch = (d) => {
      out += d;
      const m = pattern.exec(out);
      if (m) resolve({ child, match: m });
    };
    child.stdout.on('data', watch);
    // The CLI prints its status lines on stderr.
    child.stderr.on('data', (d) => {
      gatewayLog += d;
      watch(d);
    });
    child.once('exit', (c) => reject(new Error(`${args.join(' ')} exited (${c}): ${out}`)));
  });
}
const app = await startProcess([join(ROOT, 'test/safe-backup/counter-app.mjs')], {
  PG_URL: `${PG_URL}/${PG_DB}?application_name=counter-app`,
  REDIS_URL: `redis://127.0.0.1:6379/${REDIS_DB}`,
  SQLITE_PATH: sqlitePath,
  MOUNT_DIR: mount,
}, /listening (\d+)/);
const appPort = Number(app.match[1]);
const gatewayPort = 20000 + Math.floor(Math.random() * 20000);
const configPath = join(WORK, 'project/bunker.yaml');
writeFileSync(join(WORK, 'project/password'), 'bench-password\n');
writeFileSync(configPath, `project: benchsafe
state_dir: state
storage:
  locations: [{ name: local, url: "file:repo" }]
  password_file: password
environments:
  production:
    type: production
    services:
      db: { type: postgresql, url: "${PG_URL}/${PG_DB}" }
      cache: { type: redis, url: "redis://127.0.0.1:6379/${REDIS_DB}", spare_db: 11 }
      app: { type: sqlite, path: "${sqlitePath}" }
    mounts:
      uploads: { path: "${mount}" }
    gateway: { listen: "127.0.0.1:${gatewayPort}", upstream: "http://127.0.0.1:${appPort}" }
`);
const bunker = (...args) => execFileSync(process.execPath, [join(ROOT, 'bin/bunker'), '--config', configPath, ...args], { encoding: 'utf8' });
bunker('init');
const gateway = await startProcess([join(ROOT, 'bin/bunker'), '--config', configPath, 'gateway'], {}, /Gateway for production: (\S+)/);
const address = `127.0.0.1:${gatewayPort}`;

// ---- load, hold tracking, backup --------------------------------------------------------------------
const { gatewayStatus } = await import(new URL('../dist/gateway/index.js', import.meta.url).href);
const stateDir = join(WORK, 'project/state');
const results = [];
const t0 = performance.now();
const send = () => {
  const sentAt = performance.now();
  results.push(
    fetch(`http://${address}/hit`, { method: 'POST' }).then(
      async (r) => ({ ok: r.status === 200, status: r.status, body: await r.text(), sentAt, ms: performance.now() - sentAt }),
      (e) => ({ ok: false, status: 0, body: String(e), sentAt, ms: performance.now() - sentAt }),
    ),
  );
};
const loadTimer = setInterval(() => {
  const due = Math.floor(((performance.now() - t0) / 1000) * RPS);
  while (results.length < due) send();
}, 5);
// Hold intervals seen by polling the gateway's control socket every 5 ms.
const holds = [];
let polling = true;
const poller = (async () => {
  let start = null;
  while (polling) {
    const s = await gatewayStatus(stateDir, 'production').catch(() => null);
    const now = performance.now();
    if (s?.holding && start === null) start = now;
    if (s && !s.holding && start !== null) {
      holds.push([start, now]);
      start = null;
    }
    await new Promise((r) => setTimeout(r, 5));
  }
})();

await new Promise((r) => setTimeout(r, 5_000));
const backupStart = performance.now();
log('backup:create (safe) under load');
const backupOut = await new Promise((resolve, reject) => {
  const child = spawn(process.execPath, [join(ROOT, 'bin/bunker'), '--config', configPath, 'backup:create', 'production'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  child.once('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`backup failed (${code}): ${out}`))));
});
const backupEnd = performance.now();
await new Promise((r) => setTimeout(r, 3_000));
clearInterval(loadTimer);
polling = false;
await poller;
const all = await Promise.all(results);
gateway.child.kill('SIGTERM');
app.child.kill('SIGTERM');

// ---- report ---------------------------------------------------------------------------------------
const json = JSON.parse(bunker('backup:list', 'production', '--format', 'json', '-c', 'id', '-c', 'pause'));
const pauseMs = json[0]?.pause ?? null;
const drain = /released after [\d.]+ ms \(drain ([\d.]+) ms\)/.exec(gatewayLog)?.[1] ?? 'n/a';
const pct = (xs, p) => (xs.length ? xs[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))] : NaN);
const sorted = (xs) => xs.slice().sort((a, b) => a - b);
const failed = all.filter((r) => !r.ok);
const outside = sorted(all.filter((r) => r.sentAt + r.ms < backupStart || r.sentAt > backupEnd).map((r) => r.ms));
const baseline = pct(outside, 50);
const heldOnes = all.filter((r) => holds.some(([a, b]) => r.sentAt <= b && r.sentAt + r.ms >= a));
const added = sorted(heldOnes.map((r) => r.ms - baseline));
const during = sorted(all.filter((r) => r.sentAt >= backupStart && r.sentAt <= backupEnd).map((r) => r.ms));
const f = (x) => (Number.isFinite(x) ? x.toFixed(1) : 'n/a');
console.log('\n== safe backup under load ==');
console.log(`data: pgbench scale ${SCALE}, Redis ${KEYS} keys, 1.1 GB mixed tree mount, SQLite; load ${RPS} requests/s through the gateway`);
console.log(`backup: ${((backupEnd - backupStart) / 1000).toFixed(1)} s; pause recorded on the backup: ${pauseMs} ms (of which draining in-flight requests: ${drain} ms); holds seen by polling: ${holds.map(([a, b]) => `${(b - a).toFixed(0)} ms`).join(', ') || 'none'}`);
// What the pause is made of: the backup's activity log names each engine's pin() time.
const activityId = bunker('activity:list', '--format', 'plain', '--no-header').split('\n')[0]?.split(/\s+/)[0];
const pins = activityId ? /consistent points: .*/.exec(bunker('activity:log', activityId))?.[0] : undefined;
console.log(pins ?? 'consistent points: not in the activity log');
console.log(`load: ${all.length} requests in ${((performance.now() - t0) / 1000).toFixed(0)} s; machine load average ${(await import('node:os')).loadavg().map((x) => x.toFixed(1)).join(' ')}`);
console.log(`requests: ${all.length}, failed or dropped: ${failed.length}${failed.length ? ` (${[...new Set(failed.map((r) => `${r.status} ${r.body.slice(0, 80)}`))].slice(0, 3).join('; ')})` : ''}`);
console.log(`latency outside the backup: p50 ${f(baseline)} ms, p99 ${f(pct(outside, 99))} ms`);
console.log(`latency during the backup: p50 ${f(pct(during, 50))} ms, p99 ${f(pct(during, 99))} ms, max ${f(during.at(-1))} ms`);
console.log(`added latency of the ${heldOnes.length} requests that overlapped the hold: p50 ${f(pct(added, 50))} ms, p99 ${f(pct(added, 99))} ms, max ${f(added.at(-1))} ms`);
console.log(`target: max added latency <= 1000 ms and none dropped: ${added.length && added.at(-1) <= 1000 && failed.length === 0 ? 'met' : 'NOT met'}`);
if (process.env.BENCH_VERBOSE) console.log(backupOut);
await pgQuery('postgres', `DROP DATABASE IF EXISTS ${PG_DB} WITH (FORCE)`);
const r2 = new Redis(`redis://127.0.0.1:6379/${REDIS_DB}`);
await r2.flushdb();
r2.disconnect();
