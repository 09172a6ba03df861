// Mounts benchmark: Bunker's files engine against restic and borg on the same 1.1 GB mixed tree, in
// the same run: first backup, backup with nothing changed, backup after 1% of files changed, full
// restore, stored size and peak RSS (GNU time's max RSS for the other tools, getrusage for Bunker).
// RUNS rounds (default 3), each on fresh repositories with the tools taking turns going first;
// medians are reported.
// Optional: --million also backs up 1,000,000 small files with Bunker and reports its peak RSS
// (--million-only does just that).
// Run through bench/files-tree.sh (builds dist/, installs missing tools).
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync, appendFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { generateMixedTree } from './lib/mixed-dataset.mjs';
import { median } from './lib/stats.mjs';

const WORK = join(import.meta.dirname, '.work', 'files');
const DATA = join(WORK, 'mixed'); // pristine, reused between runs
const TREE = join(WORK, 'tree'); // the copy that gets changed
const PASSWORD = 'bench-password';
const env = { ...process.env, RESTIC_PASSWORD: PASSWORD, BORG_PASSPHRASE: PASSWORD, BUNKER_PASSWORD: PASSWORD, BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK: 'yes', BORG_RELOCATED_REPO_ACCESS_IS_OK: 'yes' };

/** Runs a command under GNU time; returns wall ms, peak RSS (MB) and stdout. */
function timed(cmd, args, options = {}) {
  // Write back what earlier steps left dirty first, so no tool's time includes another's writeback
  // (a restore right after 2 GB of backups was measured at 4.5 s and at 9.5 s, all of it sys time).
  spawnSync('sync');
  const started = performance.now();
  const r = spawnSync('/usr/bin/time', ['-f', '%M', cmd, ...args], { env, encoding: 'utf8', maxBuffer: 1 << 28, ...options });
  const ms = performance.now() - started;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}):\n${r.stderr}`);
  const lines = r.stderr.trim().split('\n');
  return { ms, rssMB: Math.round(Number(lines[lines.length - 1]) / 1024), stdout: r.stdout };
}

// Started as every Bunker process is (bin/bunker, the workers it starts): launchEnv(), NODE_FLAGS.
const { launchEnv, NODE_FLAGS } = await import(join(import.meta.dirname, '../dist/core/node-flags.js'));

function bunker(op, ...args) {
  const r = timed(process.execPath, [...NODE_FLAGS, join(import.meta.dirname, 'files-run.mjs'), op, ...args], { env: { ...env, ...launchEnv() } });
  const lines = r.stdout.trim().split('\n');
  return { ...r, ...JSON.parse(lines[lines.length - 1]), ms: r.ms };
}

function du(path) {
  return Number(execFileSync('du', ['-sb', path], { encoding: 'utf8' }).split('\t')[0]);
}

/**
 * Every restore runs with its repository in the page cache, read just before it, as every backup runs
 * with the tree. Before this, the restore step measured how each tool writes its repository rather
 * than how it restores: Bunker writes packs with O_DIRECT and borg drops its segments from the cache
 * (both: 0 % of the repository cached before the restore, as this bench now prints), while restic's
 * writes stay cached (97-99 %). Bunker and borg read theirs from disk, restic from memory. Warming
 * them all keeps the step about restoring. (This host also pages out memory untouched for about a
 * minute: DAMON, action pageout, min age 12 x 5 s.)
 *
 * Every backup runs with the tree in the page cache: it is read just before each tool's backup, not
 * once per round, because borg drops the files it reads from the cache (posix_fadvise DONTNEED; 8 MB
 * of the 1.1 GB tree were still cached after `borg create`), so whoever followed borg used to read
 * the tree from disk. Dropping the cache for everyone instead would be fairer to disks, but this
 * machine is shared, and dropping it disturbs everyone else.
 */
function warmUp(dir = TREE) {
  execFileSync('bash', ['-c', `find '${dir}' -type f -print0 | xargs -0 cat > /dev/null`]);
}

/** How much of a directory's file bytes are in the page cache (fincore), in percent; "?" without fincore. */
function residentPercent(dir) {
  const r = spawnSync('bash', ['-c', `find '${dir}' -type f -print0 | xargs -0 fincore -b -n -o RES,SIZE`], { encoding: 'utf8' });
  if (r.status !== 0) return '?';
  let res = 0;
  let size = 0;
  for (const line of r.stdout.trim().split('\n')) {
    const [a, b] = line.trim().split(/\s+/).map(Number);
    res += a || 0;
    size += b || 0;
  }
  return size ? ((100 * res) / size).toFixed(0) : '?';
}

/** Drops a directory's files from the page cache (written back first), leaving everything else cached. */
function dropFromCache(dir) {
  spawnSync('sync');
  const script = 'import os,sys\nfor root, _, files in os.walk(sys.argv[1]):\n  for f in files:\n    fd = os.open(os.path.join(root, f), os.O_RDONLY)\n    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)\n    os.close(fd)\n';
  execFileSync('python3', ['-c', script, dir]);
}

/** Changes 1% of the files: appends to 200 text files and rewrites the head of 3 binary ones. */
function changeOnePercent() {
  let n = 0;
  for (const folder of readdirSync(join(TREE, 'text')).sort()) {
    for (const f of readdirSync(join(TREE, 'text', folder)).sort().slice(0, 2)) {
      appendFileSync(join(TREE, 'text', folder, f), `\nchanged ${n++}\n`);
    }
  }
  for (let i = 0; i < 3; i++) {
    const p = join(TREE, 'binary', `blob-00${i}.bin`);
    const buf = readFileSync(p);
    buf.write(`changed ${i}`, 0);
    writeFileSync(p, buf);
  }
  return n + 3;
}

const RUNS = Number(process.env.RUNS ?? 3);
const TOOLS = ['bunker', 'restic', 'borg'];
const STEPS = ['first backup', 'nothing changed', '1% changed', 'full restore', 'cold restore'];

function main() {
  mkdirSync(WORK, { recursive: true });
  console.log('dataset: generating (skipped when present)...');
  generateMixedTree(DATA);
  const runs = [];
  for (let run = 0; run < RUNS; run++) runs.push(oneRun(run));

  console.log(`\nmedians of ${RUNS} runs (tools take turns going first):`);
  const med = (step, tool) => median(runs.map((r) => r.ms[step][tool]));
  const summary = {};
  for (const step of STEPS) {
    summary[step] = Object.fromEntries(TOOLS.map((t) => [t, med(step, t)]));
    const perRun = runs.map((r) => (r.ms[step].bunker / r.ms[step].restic).toFixed(2)).join(', ');
    console.log(`${step.padEnd(16)} bunker ${(summary[step].bunker / 1000).toFixed(2)} s, restic ${(summary[step].restic / 1000).toFixed(2)} s, borg ${(summary[step].borg / 1000).toFixed(2)} s; bunker/restic ${median(runs.map((r) => r.ms[step].bunker / r.ms[step].restic)).toFixed(2)} (runs ${perRun}), bunker/borg ${median(runs.map((r) => r.ms[step].bunker / r.ms[step].borg)).toFixed(2)}`);
  }
  const sizeRatio = median(runs.map((r) => r.sizes.bunker / r.sizes.restic));
  console.log(`stored size after 3 backups: bunker ${(median(runs.map((r) => r.sizes.bunker)) / 1e6).toFixed(0)} MB, restic ${(median(runs.map((r) => r.sizes.restic)) / 1e6).toFixed(0)} MB, borg ${(median(runs.map((r) => r.sizes.borg)) / 1e6).toFixed(0)} MB; bunker/restic ${sizeRatio.toFixed(3)}`);
  console.log(`bunker peak RSS (highest of all runs): ${Math.max(...runs.map((r) => r.peakMB))} MB`);
  console.log(`bunker restores identical to the tree: ${runs.every((r) => r.identical) ? 'yes, every run' : 'NO'}`);
  writeFileSync(join(WORK, 'results.json'), JSON.stringify({ runs: RUNS, summary, perRun: runs }, null, 2));
  if (process.argv.includes('--million')) million();
}

/** One round: fresh repositories and a fresh copy of the tree; each step runs every tool, `run` rotating who goes first. */
function oneRun(run) {
  console.log(`\nrun ${run + 1} of ${RUNS}`);
  rmSync(TREE, { recursive: true, force: true });
  execFileSync('cp', ['-a', DATA, TREE]);
  for (const d of ['bunker-repo', 'restic-repo', 'borg-repo', 'restore-bunker', 'restore-restic', 'restore-borg', 'a1.json', 'a2.json', 'a3.json']) {
    rmSync(join(WORK, d), { recursive: true, force: true });
  }
  const files = Number(execFileSync('bash', ['-c', `find '${TREE}' -type f | wc -l`], { encoding: 'utf8' }));
  const bytes = du(TREE);
  console.log(`tree: ${files} files, ${(bytes / 1e9).toFixed(2)} GB; read into the page cache before every backup`);

  const B = join(WORK, 'bunker-repo');
  const R = join(WORK, 'restic-repo');
  const G = join(WORK, 'borg-repo');
  bunker('init', B);
  timed('restic', ['init', '--repo', R]);
  timed('borg', ['init', '--encryption=repokey-blake2', G]);

  const order = TOOLS.map((_, i) => TOOLS[(i + run) % TOOLS.length]);
  const rows = [];
  const ms = {};
  const step = (name, fns, { warm = () => warmUp() } = {}) => {
    const r = {};
    for (const tool of order) {
      warm(tool);
      r[tool] = fns[tool]();
    }
    rows.push({ name, ...r });
    ms[name] = Object.fromEntries(TOOLS.map((t) => [t, r[t].ms]));
    console.log(`${name}: bunker ${(r.bunker.ms / 1000).toFixed(2)} s (${r.bunker.rssMB} MB), restic ${(r.restic.ms / 1000).toFixed(2)} s (${r.restic.rssMB} MB), borg ${(r.borg.ms / 1000).toFixed(2)} s (${r.borg.rssMB} MB); bunker/restic ${(r.bunker.ms / r.restic.ms).toFixed(2)}, bunker/borg ${(r.bunker.ms / r.borg.ms).toFixed(2)}`);
  };

  step('first backup', {
    bunker: () => bunker('backup', B, TREE, join(WORK, 'a1.json')),
    restic: () => timed('restic', ['backup', '--repo', R, '-q', TREE]),
    borg: () => timed('borg', ['create', `${G}::a1`, TREE]),
  });
  step('nothing changed', {
    bunker: () => bunker('backup', B, TREE, join(WORK, 'a2.json'), join(WORK, 'a1.json')),
    restic: () => timed('restic', ['backup', '--repo', R, '-q', TREE]),
    borg: () => timed('borg', ['create', `${G}::a2`, TREE]),
  });
  const changed = changeOnePercent();
  console.log(`changed ${changed} files`);
  step('1% changed', {
    bunker: () => bunker('backup', B, TREE, join(WORK, 'a3.json'), join(WORK, 'a2.json')),
    restic: () => timed('restic', ['backup', '--repo', R, '-q', TREE]),
    borg: () => timed('borg', ['create', `${G}::a3`, TREE]),
  });
  // Each restore goes to a file system of its own, made for it: in one shared for the round, whoever
  // restored later was slower (Bunker 1.78-2.33 s first or second, 2.22-2.84 s last; restic 3.90-3.97 s
  // first, 4.30-4.67 s after another tool), whatever the repository's cache state.
  let identical = true;
  const restoreStep = (name, warm) =>
    step(name, {
      bunker: () =>
        onFreshFileSystem((dir) => {
          const r = bunker('restore', B, join(WORK, 'a3.json'), dir);
          const check = spawnSync('diff', ['-rq', TREE, join(dir, 'mount')], { encoding: 'utf8' });
          identical &&= check.status === 0;
          console.log(`bunker ${name} identical to the tree: ${check.status === 0 ? 'yes' : 'NO\n' + check.stdout.slice(0, 2000)}`);
          return r;
        }),
      restic: () => onFreshFileSystem((dir) => timed('restic', ['restore', '--repo', R, 'latest', '--target', dir])),
      borg: () => onFreshFileSystem((dir) => timed('borg', ['extract', `${G}::a3`], { cwd: dir })),
    }, { warm });
  restoreStep('full restore', (tool) => {
    const repo = { bunker: B, restic: R, borg: G }[tool];
    console.log(`${tool} repository in the page cache before its restore: ${residentPercent(repo)} % (then read in)`);
    warmUp(repo);
  });
  // For the record, not a target: each repository dropped from the page cache first (only its own
  // files, posix_fadvise DONTNEED), as a restore long after the backup finds it.
  restoreStep('cold restore', (tool) => dropFromCache({ bunker: B, restic: R, borg: G }[tool]));
  const sizes = { bunker: du(B), restic: du(R), borg: du(G) };
  console.log(`stored size after 3 backups: bunker ${(sizes.bunker / 1e6).toFixed(0)} MB, restic ${(sizes.restic / 1e6).toFixed(0)} MB, borg ${(sizes.borg / 1e6).toFixed(0)} MB; bunker/restic ${(sizes.bunker / sizes.restic).toFixed(3)}`);
  return { ms, sizes, identical, peakMB: Math.max(...rows.map((r) => r.bunker.rssMB)), files, bytes };
}

let saidWhere = false;

/** Runs fn(dir) with dir on a fresh file system (see restoreFileSystem), thrown away afterwards. */
function onFreshFileSystem(fn) {
  const target = restoreFileSystem();
  try {
    const dir = join(target.dir, 'restore');
    rmSync(dir, { recursive: true, force: true }); // left by an interrupted run (fallback directory)
    mkdirSync(dir);
    return fn(dir);
  } finally {
    target.release();
  }
}

/**
 * Where the tools restore to: a new, empty ext4 file system (a sparse image on a loop device with
 * direct I/O, so nothing is cached twice), made for this run and thrown away after it. This disk's
 * ext4 has no journal, and without one ext4 does not reuse an inode freed in the last 60 s (300 s
 * while its inode-table block is dirty, which creating files nearby makes it) and checks every
 * candidate through the buffer cache: the first tool to create 20,000 files within minutes of the
 * ~80,000 this bench deletes at its start walked past them all (Bunker's restore: 8.1 s, restic's
 * right after it: 5.9 s; a profile of the same situation had 58 % of all CPU in the allocator's
 * recently_deleted() checks). On a fresh file system every tool
 * starts from the same clean state. Without root or loop devices it falls back to WORK, and says so.
 */
function restoreFileSystem() {
  const image = join(WORK, 'restore.img');
  const dir = join(WORK, 'restore-fs');
  const run = (cmd, args) => spawnSync(cmd, args, { encoding: 'utf8' });
  if (run('mountpoint', ['-q', dir]).status === 0) run('umount', [dir]); // left by an interrupted run
  for (const line of run('losetup', ['-j', image]).stdout?.split('\n') ?? []) if (line.includes(':')) run('losetup', ['-d', line.split(':')[0]]);
  rmSync(image, { force: true });
  mkdirSync(dir, { recursive: true });
  // Inode tables and journal written now, not by a kernel thread in the background of the timings.
  const made = run('truncate', ['-s', '12G', image]).status === 0 && run('mkfs.ext4', ['-q', '-F', '-E', 'lazy_itable_init=0,lazy_journal_init=0', image]).status === 0;
  const loop = made ? run('losetup', ['--direct-io=on', '--show', '-f', image]) : undefined;
  const device = loop?.status === 0 ? loop.stdout.trim() : undefined;
  if (device && run('mount', [device, dir]).status === 0) {
    if (!saidWhere) console.log(`each restore goes to a fresh ext4 file system (a loop device with direct I/O) at ${dir}`);
    saidWhere = true;
    return {
      dir,
      release() {
        run('umount', [dir]);
        run('losetup', ['-d', device]);
        rmSync(image, { force: true });
      },
    };
  }
  if (device) run('losetup', ['-d', device]);
  rmSync(image, { force: true });
  if (!saidWhere) console.log(`restores go to ${WORK} (no fresh file system: ${loop?.stderr?.trim() || 'mkfs.ext4 or mount failed'}); on an ext4 without a journal, recently deleted inodes may slow the first restore`);
  saidWhere = true;
  return {
    dir: WORK,
    release() {
      rmSync(join(WORK, 'restore'), { recursive: true, force: true });
    },
  };
}

function million() {
  const dir = join(WORK, 'million');
  if (!existsSync(`${dir}.complete`)) {
    console.log('million: creating 1,000,000 files of 64-200 bytes in 1,000 folders...');
    rmSync(dir, { recursive: true, force: true });
    execFileSync(process.execPath, ['-e', `
      const fs = require('fs');
      for (let d = 0; d < 1000; d++) {
        const folder = ${JSON.stringify(dir)} + '/f' + d;
        fs.mkdirSync(folder, { recursive: true });
        for (let i = 0; i < 1000; i++) fs.writeFileSync(folder + '/' + i + '.txt', 'file ' + d + '/' + i + ' ' + 'x'.repeat(64 + ((d * 1000 + i) % 137)));
      }
      fs.writeFileSync(${JSON.stringify(dir)} + '.complete', '');
    `]);
  }
  const repo = join(WORK, 'million-repo');
  rmSync(repo, { recursive: true, force: true });
  bunker('init', repo);
  const first = bunker('backup', repo, dir, join(WORK, 'm1.json'));
  console.log(`million: first backup ${(first.ms / 1000).toFixed(1)} s, peak RSS ${first.rssMB} MB`);
  const again = bunker('backup', repo, dir, join(WORK, 'm2.json'), join(WORK, 'm1.json'));
  console.log(`million: unchanged backup ${(again.ms / 1000).toFixed(1)} s, peak RSS ${again.rssMB} MB`);
  rmSync(repo, { recursive: true, force: true });
}

if (process.argv.includes('--million-only')) {
  mkdirSync(WORK, { recursive: true });
  million();
} else main();
