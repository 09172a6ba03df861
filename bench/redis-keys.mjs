// See redis-keys.sh. Prints wall times and the two ratios the issue sets targets for:
//   backup / redis-cli --rdb  (target ≤ 0.2)      restore / backup  (target ≤ 4)
// and, for the backups, where the CPU time went: Bunker's process (all its threads), the source
// server's fork child (serializing the RDB) and its main thread (relaying the child's pipe to the socket).
import { spawn, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { initRepository } from '../dist/repo/index.js';
import { FsBackend } from '../dist/storage/index.js';
import { runBackup, runRestore } from '../dist/engines/engine.js';
import { silentLogger } from '../dist/core/log.js';
import { redisEngine } from '../dist/engines/redis/index.js';
import { median } from './lib/stats.mjs';

const KEYS = Number(process.env.KEYS ?? 1_000_000);
const RUNS = Number(process.env.RUNS ?? 3);
const work = join(process.cwd(), 'bench/.work/redis');
rmSync(work, { recursive: true, force: true });
mkdirSync(work, { recursive: true });

async function startServer(name) {
  for (let attempt = 0; attempt < 20; attempt++) {
    const port = 16390 + Math.floor(Math.random() * 2000);
    const dir = join(work, name);
    mkdirSync(dir, { recursive: true });
    const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' });
    let exited = false;
    proc.once('exit', () => (exited = true));
    for (let i = 0; i < 100 && !exited; i++) {
      await new Promise((r) => setTimeout(r, 50));
      const c = new Redis({ port, host: '127.0.0.1', lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 });
      c.on('error', () => {});
      const info = await c.connect().then(() => c.info('server')).catch(() => '');
      c.disconnect();
      if (info.includes(`process_id:${proc.pid}\r\n`)) return { port, proc };
    }
    proc.kill('SIGKILL');
  }
  throw new Error('could not start redis-server');
}

function pseudoRandomValue(i) {
  // 130 bytes: random hex and repeated text, roughly as compressible as real cache values; 1M keys ≈ 160 MB.
  let x = (i * 2654435761) >>> 0;
  let s = '';
  for (let k = 0; k < 6; k++) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    s += x.toString(16).padStart(8, '0');
  }
  return (s + '-session-data-user-preferences-cart-items-').padEnd(130, 'x').slice(0, 130);
}

async function fill(port) {
  const r = new Redis({ port, host: '127.0.0.1' });
  const batch = 10_000;
  for (let i = 0; i < KEYS; i += batch) {
    const p = r.pipeline();
    for (let j = i; j < Math.min(KEYS, i + batch); j++) {
      if (j % 10 === 0) p.hset(`user:${j}`, 'name', `user${j}`, 'visits', String(j % 977), 'plan', j % 3 ? 'free' : 'pro');
      else if (j % 10 === 1) p.set(`session:${j}`, pseudoRandomValue(j), 'PX', 86_400_000);
      else p.set(`cache:${j}`, pseudoRandomValue(j));
    }
    await p.exec();
  }
  const memory = await r.info('memory');
  const keys = await r.dbsize();
  r.disconnect();
  return { keys, usedMemory: Number(/used_memory_dataset:(\d+)/.exec(memory)[1]) };
}

const secs = (ms) => (ms / 1000).toFixed(2) + ' s';
const load = () => loadavg().map((x) => x.toFixed(2)).join(' ');

// CPU of a redis-server from /proc (Linux): its own threads, and its reaped children (the fork).
const clockTick = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK']).toString()) || 100;
  } catch {
    return 100;
  }
})();
function serverCpu(pid) {
  if (!existsSync(`/proc/${pid}/stat`)) return null;
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  const ms = (i) => (Number(f[i]) * 1000) / clockTick;
  return { main: ms(11) + ms(12), children: ms(13) + ms(14) };
}
/** CPU spent by the server (and its finished fork) since `before`; waits for the child to be reaped. */
async function serverCpuSince(pid, before) {
  if (!before) return null;
  await new Promise((r) => setTimeout(r, 400)); // redis reaps its child on a cron tick; not timed
  const now = serverCpu(pid);
  return { main: now.main - before.main, child: now.children - before.children };
}

function timeRedisCli(port, extraConfig) {
  const file = join(work, 'redis-cli.rdb');
  const t = process.hrtime.bigint();
  execFileSync('redis-cli', ['-p', String(port), '--rdb', file], { stdio: 'ignore' });
  const ms = Number(process.hrtime.bigint() - t) / 1e6;
  const size = statSync(file).size;
  rmSync(file);
  return { ms, size, extraConfig };
}

const ctx = (repo) => ({ repo, log: silentLogger, progress() {}, signal: new AbortController().signal });

const source = await startServer('source');
const target = await startServer('target');
console.log(`load average at start: ${load()} (${availableParallelism()} cores)`);
try {
  const filled = await fill(source.port);
  console.log(`data: ${filled.keys} keys, used_memory_dataset ${(filled.usedMemory / 1e6).toFixed(0)} MB`);

  const cli = [];
  for (let i = 0; i < RUNS; i++) cli.push(timeRedisCli(source.port));
  console.log(`redis-cli --rdb (server defaults, repl-diskless-sync-delay 5): ${cli.map((c) => secs(c.ms)).join(', ')}; RDB ${(cli[0].size / 1e6).toFixed(1)} MB`);
  // For scale only: redis-cli with the delay removed by hand (not the comparison the target names).
  const c = new Redis({ port: source.port, host: '127.0.0.1' });
  await c.config('SET', 'repl-diskless-sync-delay', '0');
  const cliCpuBefore = serverCpu(source.proc.pid);
  const cliNoDelay = timeRedisCli(source.port);
  const cliCpu = await serverCpuSince(source.proc.pid, cliCpuBefore);
  await c.config('SET', 'repl-diskless-sync-delay', '5');
  c.disconnect();
  console.log(
    `redis-cli --rdb with repl-diskless-sync-delay 0 (for scale): ${secs(cliNoDelay.ms)}` +
      (cliCpu ? `; server CPU: fork child ${secs(cliCpu.child)} (rdbcompression yes), main ${secs(cliCpu.main)}` : ''),
  );

  const engine = (url) => redisEngine.create('cache', redisEngine.configSchema.parse({ url }), { configDir: work, stateDir: work, log: silentLogger });
  const backups = [];
  const cpu = [];
  let artifact;
  let repo;
  for (let i = 0; i < RUNS; i++) {
    rmSync(join(work, 'repo'), { recursive: true, force: true });
    repo = await initRepository({ storage: new FsBackend(join(work, 'repo')), password: 'bench-password', kdf: 'fast' });
    const serverBefore = serverCpu(source.proc.pid);
    const usageBefore = process.resourceUsage();
    const cpuBefore = process.cpuUsage();
    const t = process.hrtime.bigint();
    artifact = await runBackup(await engine(`redis://127.0.0.1:${source.port}`).openBackup({ ...ctx(repo), mode: 'live' }));
    await repo.flush(); // durable in the repository, as a finished backup is
    backups.push(Number(process.hrtime.bigint() - t) / 1e6);
    const own = process.cpuUsage(cpuBefore);
    const usage = process.resourceUsage();
    cpu.push({
      bunker: (own.user + own.system) / 1000,
      // Page faults (first touch of fresh buffers) and sleeps are costly on this VM: see engine-redis.md.
      faults: usage.minorPageFault - usageBefore.minorPageFault,
      sleeps: usage.voluntaryContextSwitches - usageBefore.voluntaryContextSwitches,
      server: await serverCpuSince(source.proc.pid, serverBefore),
    });
    if (i < RUNS - 1) await repo.close();
  }
  console.log(`bunker backup (into a fresh repository, flushed): ${backups.map(secs).join(', ')}; RDB ${(artifact.size / 1e6).toFixed(1)} MB, stored ${(repo.stats().storedBytes / 1e6).toFixed(1)} MB`);
  for (const [i, c] of cpu.entries()) {
    const server = c.server ? `, server fork child ${secs(c.server.child)}, server main ${secs(c.server.main)}` : '';
    const sum = c.bunker + (c.server ? c.server.child + c.server.main : 0);
    console.log(`  run ${i + 1} CPU: bunker process ${secs(c.bunker)} (${c.faults} page faults, ${c.sleeps} sleeps)${server}; sum ${secs(sum)} in ${secs(backups[i])} wall`);
  }

  const restores = [];
  for (let i = 0; i < RUNS; i++) {
    const t = process.hrtime.bigint();
    await runRestore(await engine(`redis://127.0.0.1:${target.port}`).openRestore({ ...ctx(repo), options: {} }, artifact));
    restores.push(Number(process.hrtime.bigint() - t) / 1e6);
  }
  const check = new Redis({ port: target.port, host: '127.0.0.1' });
  const restoredKeys = await check.dbsize();
  check.disconnect();
  if (restoredKeys !== filled.keys) throw new Error(`restore produced ${restoredKeys} keys, expected ${filled.keys}`);
  console.log(`bunker restore (whole instance, via spare db + SWAPDB): ${restores.map(secs).join(', ')}; ${restoredKeys} keys`);
  await repo.close();

  const cliMs = median(cli.map((x) => x.ms));
  const backupMs = median(backups);
  const restoreMs = median(restores);
  console.log('');
  console.log(`medians: redis-cli --rdb ${secs(cliMs)}, bunker backup ${secs(backupMs)}, bunker restore ${secs(restoreMs)}`);
  console.log(`ratio backup / redis-cli --rdb = ${(backupMs / cliMs).toFixed(3)}  (target <= 0.2)`);
  console.log(`ratio restore / backup         = ${(restoreMs / backupMs).toFixed(2)}  (target <= 4)`);
  console.log(`ratio backup / redis-cli --rdb with delay 0 = ${(backupMs / cliNoDelay.ms).toFixed(2)}  (for scale)`);
  console.log(`load average at end: ${load()}`);
} finally {
  source.proc.kill('SIGTERM');
  target.proc.kill('SIGTERM');
  rmSync(work, { recursive: true, force: true });
}
