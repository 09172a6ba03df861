// How the way a Bunker process is started (src/core/node-flags.ts) changes a 1.1 GB store: the same
// tar stored through the repository by node with its defaults, with one malloc arena, with the thread
// pool sized to the cores, and as Bunker starts every process (all of them, plus NODE_FLAGS). The
// configurations take turns, RUNS rounds (default 3); prints wall time and peak RSS, medians and worst.
// Usage: node bench/launch-settings.mjs   (after `bash bench/repo-stream.sh` has made the tar and dist/)
import { spawnSync } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { median } from './lib/stats.mjs';

const root = join(import.meta.dirname, '..');
const { LAUNCH_ENV, NODE_FLAGS, launchEnv, threadPoolSize } = await import(join(root, 'dist/core/node-flags.js'));
const tar = join(root, 'bench/.work/repo-stream/mixed.tar');
if (!existsSync(tar)) throw new Error(`${tar} is missing: run bash bench/repo-stream.sh once first`);
const client = join(root, 'bench/repo-stream.mjs');
const repo = join(root, 'bench/.work/launch-settings-repo');
const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !(k in LAUNCH_ENV) && k !== 'UV_THREADPOOL_SIZE'));

const configs = {
  'node defaults': { env: {}, flags: [] },
  'one malloc arena': { env: LAUNCH_ENV, flags: [] },
  [`pool of ${threadPoolSize()}`]: { env: { UV_THREADPOOL_SIZE: String(threadPoolSize()) }, flags: [] },
  'as Bunker starts': { env: launchEnv({}), flags: NODE_FLAGS },
};
const RUNS = Number(process.env.RUNS ?? 3);
const results = Object.fromEntries(Object.keys(configs).map((name) => [name, []]));
for (let run = 0; run < RUNS; run++) {
  for (const [name, { env, flags }] of Object.entries(configs)) {
    rmSync(repo, { recursive: true, force: true });
    spawnSync(process.execPath, [client, 'init', repo], { stdio: 'inherit' });
    spawnSync('sync');
    const r = spawnSync('/usr/bin/time', ['-f', '%e %M', 'bash', '-c', `${process.execPath} ${flags.join(' ')} ${client} store ${repo} < ${tar}`], { env: { ...base, ...env }, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`store failed: ${r.stderr}`);
    const [secs, kb] = r.stderr.trim().split('\n').pop().split(' ').map(Number);
    results[name].push({ secs, mb: kb / 1024 });
    console.log(`${name.padEnd(18)} run ${run + 1}: ${secs.toFixed(2)} s, ${(kb / 1024).toFixed(0)} MB peak RSS`);
  }
}
rmSync(repo, { recursive: true, force: true });
console.log(`\nmedians of ${RUNS} (peak RSS: median and highest)`);
for (const [name, rs] of Object.entries(results)) {
  console.log(`${name.padEnd(18)} ${median(rs.map((r) => r.secs)).toFixed(2)} s   ${median(rs.map((r) => r.mb)).toFixed(0)} MB, highest ${Math.max(...rs.map((r) => r.mb)).toFixed(0)} MB`);
}
