// One Bunker files-engine operation in its own process, so its wall time and peak RSS are its own.
// Prints one JSON line: { ms, rssMB, ... }. The repository password comes from BUNKER_PASSWORD.
//   node bench/files-run.mjs init REPO
//   node bench/files-run.mjs backup REPO TREE OUT.json [PARENT.json]
//   node bench/files-run.mjs restore REPO ARTIFACT.json TARGET_PARENT   (restores into TARGET_PARENT/mount)
import { readFileSync, writeFileSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import { initRepository, openRepository } from '../dist/repo/index.js';
import { FsBackend } from '../dist/storage/index.js';
import { stderrLogger } from '../dist/core/log.js';

const [op, repoDir, ...rest] = process.argv.slice(2);
const password = process.env.BUNKER_PASSWORD ?? 'bench-password';
const storage = new FsBackend(repoDir);
const log = stderrLogger('warn');
const started = performance.now();
const ctxBase = { log, progress() {}, signal: new AbortController().signal };
let extra = {};

if (op === 'init') {
  const repo = await initRepository({ storage, password });
  await repo.close();
} else if (op === 'backup') {
  const [tree, out, parentFile] = rest;
  const opening = openRepository({ storage, password });
  const { filesEngine } = await import('../dist/engines/files/index.js');
  const { runBackup } = await import('../dist/engines/engine.js');
  const repo = await opening;
  const parent = parentFile ? JSON.parse(readFileSync(parentFile, 'utf8')) : undefined;
  const engine = filesEngine.create('bench', { path: basename(tree) }, { configDir: dirname(tree), stateDir: '/tmp', log });
  const artifact = await runBackup(await engine.openBackup({ ...ctxBase, repo, parent, mode: 'live' }));
  await repo.saveSnapshot({ version: 1, time: new Date().toISOString(), tags: { bench: 'files' }, services: {}, mounts: { bench: artifact } });
  const stats = repo.stats();
  await repo.close();
  writeFileSync(out, JSON.stringify(artifact));
  extra = { bytes: stats.bytes, newChunks: stats.newChunks, warnings: artifact.warnings.length };
} else if (op === 'restore') {
  const [artifactFile, targetParent] = rest;
  const repo = await openRepository({ storage, password });
  const artifact = JSON.parse(readFileSync(artifactFile, 'utf8'));
  const engine = filesEngine.create('bench', { path: 'mount' }, { configDir: targetParent, stateDir: '/tmp', log });
  await runRestore(await engine.openRestore({ ...ctxBase, repo, options: {} }, artifact));
  await repo.close();
} else {
  console.error(`unknown operation ${op}`);
  process.exit(2);
}
const ms = performance.now() - started;
console.log(JSON.stringify({ ms: Math.round(ms), rssMB: Math.round(process.resourceUsage().maxRSS / 1024), ...extra }));
