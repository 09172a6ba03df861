// A restore killed with SIGKILL at random points leaves the mount wholly old or wholly new: the swap
// is one renameat2(RENAME_EXCHANGE), so no recovery step is needed for the mount itself. A later
// restore removes the staging directories the killed ones left beside the mount.
// The restore runs in a child process using the built engine (dist/; `npm run build` first).
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runBackup, runRestore } from '../../src/engines/engine.js';
import type { ServiceArtifact } from '../../src/repo/types.js';
import { createTestRepo, type TestRepo } from '../helpers/repo.js';
import { backupCtx, mountEngine, restoreCtx, tempDir } from './harness.js';
import { describeTree, diffTrees, type EntryFacts } from './tree-compare.js';

const CHILD = join(import.meta.dirname, 'restore-child.mjs');
const RUNS = 20;

function fill(dir: string, label: string, dirs: number, files: number): void {
  for (let d = 0; d < dirs; d++) {
    mkdirSync(join(dir, `${label}-dir-${d}`), { recursive: true });
    for (let f = 0; f < files; f++) writeFileSync(join(dir, `${label}-dir-${d}`, `f${f}.txt`), `${label} ${d}/${f} ${randomBytes(200).toString('hex')}`);
  }
  writeFileSync(join(dir, 'shared-name.bin'), randomBytes(4 << 20));
}

interface ChildResult {
  signal: NodeJS.Signals | null;
  code: number | null;
  out: string;
  err: string;
  restoreMs: number;
}

/** Runs the child; when killAfterMs is set, SIGKILLs it that long after it says "start". */
function runChild(args: string[], killAfterMs?: number): Promise<ChildResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CHILD, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let started = 0;
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (!started && out.includes('start')) {
        started = Date.now();
        if (killAfterMs !== undefined) setTimeout(() => child.kill('SIGKILL'), killAfterMs);
      }
    });
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('exit', (code, signal) => resolve({ code, signal, out, err, restoreMs: started ? Date.now() - started : 0 }));
  });
}

describe('files restore killed with SIGKILL', () => {
  let t: TestRepo;
  let base: string;
  let artifactFile: string;
  let artifact: ServiceArtifact;
  let oldTree: Map<string, EntryFacts>;
  let newTree: Map<string, EntryFacts>;

  beforeAll(async () => {
    if (!existsSync(join(import.meta.dirname, '../../dist/engines/files/index.js'))) {
      throw new Error('dist/ is missing: run `npm run build` before this test');
    }
    t = await createTestRepo();
    base = tempDir('kill');
    mkdirSync(join(base, 'new/mount'), { recursive: true });
    fill(join(base, 'new/mount'), 'new', 12, 30);
    artifact = await runBackup(await mountEngine(join(base, 'new')).openBackup(backupCtx(t.repo)));
    await t.repo.flush();
    artifactFile = join(base, 'artifact.json');
    writeFileSync(artifactFile, JSON.stringify(artifact));
    newTree = describeTree(join(base, 'new/mount'), { withRoot: true });
    mkdirSync(join(base, 'old-template'));
    fill(join(base, 'old-template'), 'old', 8, 25);
    oldTree = describeTree(join(base, 'old-template'), { withRoot: true });
  });

  afterAll(async () => {
    await t?.cleanup();
    if (base) rmSync(base, { recursive: true, force: true });
  });

  it(`leaves the mount wholly old or wholly new, ${RUNS} times`, async () => {
    const target = join(base, 'target');
    mkdirSync(target);
    const mount = join(target, 'mount');
    const resetOld = () => {
      rmSync(mount, { recursive: true, force: true });
      execFileSync('cp', ['-a', join(base, 'old-template'), mount]); // cp -a keeps nanosecond times
    };
    const args = [t.dir, t.password, target, artifactFile];

    // Calibration: uninterrupted runs give the span the kills are spread over. The median of three:
    // a single run slowed by a busy host once stretched the span so far that most kills came too late.
    const spans: number[] = [];
    for (let i = 0; i < 3; i++) {
      resetOld();
      const run = await runChild(args);
      expect(run.err).toBe('');
      expect(run.out).toContain('done');
      expect(diffTrees(newTree, describeTree(mount, { withRoot: true }))).toEqual([]);
      spans.push(run.restoreMs);
    }
    const full = { restoreMs: spans.sort((a, b) => a - b)[1]! };

    const outcomes: string[] = [];
    for (let i = 0; i < RUNS; i++) {
      resetOld();
      // Half the kills spread over the whole restore, half aimed at its end, where the swap happens.
      const killAt = full.restoreMs * (i % 2 === 0 ? Math.random() * 1.1 : 0.6 + Math.random() * 0.4);
      const r = await runChild(args, killAt);
      const now = describeTree(mount, { withRoot: true });
      const isOld = diffTrees(oldTree, now).length === 0;
      const isNew = diffTrees(newTree, now).length === 0;
      expect(isOld || isNew, `run ${i}: killed ${killAt.toFixed(0)} ms in, the mount is neither tree`).toBe(true);
      outcomes.push(`${r.signal === 'SIGKILL' ? 'killed' : 'finished'}:${isOld ? 'old' : 'new'}`);
    }
    console.log(`files kill test (restore ~${full.restoreMs} ms): ${outcomes.join(' ')}`);
    // The test only means something if kills landed while the restore was running.
    expect(outcomes.filter((o) => o.startsWith('killed')).length).toBeGreaterThanOrEqual(RUNS / 4);

    // The next restore removes what killed ones left beside the mount.
    await runRestore(await mountEngine(target).openRestore(restoreCtx(t.repo), artifact));
    expect(readdirSync(target)).toEqual(['mount']);
    expect(diffTrees(newTree, describeTree(mount, { withRoot: true }))).toEqual([]);
  });
});
