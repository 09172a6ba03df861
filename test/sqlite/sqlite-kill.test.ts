// A restore SIGKILLed at random points leaves the target wholly old or wholly new, never a mix, even
// when the old database's latest commits live only in its -wal.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { copyFileSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { runBackup } from '../../src/engines/engine.js';
import { sqliteEngine } from '../../src/engines/sqlite/index.js';
import type { ServiceArtifact } from '../../src/repo/types.js';
import { createTestRepo, type TestRepo } from '../helpers/repo.js';
import { compileForChild } from './compile-engine.js';
import { backupContext, engineEnv, tempDir } from './context.js';

const CHILD = join(import.meta.dirname, 'fixtures', 'restore-child.mjs');
const OLD_ROWS = 300;
const NEW_ROWS = 30_000;

let dir: ReturnType<typeof tempDir>;
let compiled: ReturnType<typeof compileForChild>;
let testRepo: TestRepo;
beforeAll(async () => {
  dir = tempDir('sqlite-kill');
  compiled = compileForChild('src/engines/sqlite/index.ts');
  testRepo = await createTestRepo();
});
afterAll(async () => {
  await testRepo?.cleanup();
  compiled?.remove();
  dir?.remove();
});

function makeDb(file: string, rows: number, marker: string): void {
  const db = new Database(file);
  db.pragma('journal_mode = wal');
  db.exec('CREATE TABLE ledger (id INTEGER PRIMARY KEY, pad BLOB); CREATE TABLE marker (v TEXT)');
  const insert = db.prepare('INSERT INTO ledger (pad) VALUES (randomblob(150))');
  db.transaction(() => {
    for (let i = 0; i < rows; i++) insert.run();
    db.prepare('INSERT INTO marker VALUES (?)').run(marker);
  })();
  db.close();
}

function state(file: string): { marker: string; rows: number; integrity: string } {
  const db = new Database(file, { fileMustExist: true });
  try {
    return {
      marker: String(db.prepare('SELECT v FROM marker').pluck().get()),
      rows: Number(db.prepare('SELECT count(*) FROM ledger').pluck().get()),
      integrity: String(db.pragma('integrity_check', { simple: true })),
    };
  } finally {
    db.close();
  }
}

it('restore killed at random points: the target is wholly old or wholly new', async () => {
  // The new database, backed up through the real repository; the child reads its bytes from a file.
  const source = freshDir(join(dir.path, 'main'));
  makeDb(join(source, 'app.sqlite'), NEW_ROWS, 'new');
  const artifact: ServiceArtifact = await runBackup(
    await sqliteEngine.create('db', { path: 'app.sqlite' }, engineEnv(source)).openBackup(backupContext(testRepo.repo)),
  );
  const dataFile = join(dir.path, 'stored.bin');
  writeFileSync(dataFile, await testRepo.repo.readBuffer(artifact.streams.database!));

  // The old database: its file says "base"; its last commit ("old", more rows) lives only in the -wal.
  const templates = freshDir(join(dir.path, 'templates'));
  const baseFile = join(templates, 'old.sqlite');
  makeDb(baseFile, OLD_ROWS, 'base');
  const app = new Database(baseFile);
  app.pragma('wal_autocheckpoint = 0');
  app.exec("UPDATE marker SET v = 'old'; INSERT INTO ledger (pad) SELECT randomblob(150) FROM ledger LIMIT 10");
  copyFileSync(baseFile, join(templates, 'snap.sqlite'));
  copyFileSync(baseFile + '-wal', join(templates, 'snap.sqlite-wal'));
  app.close();

  const target = freshDir(join(dir.path, 'staging'));
  const file = join(target, 'app.sqlite');
  const resetTarget = () => {
    for (const s of ['', '-wal', '-shm', '-journal']) rmSync(file + s, { force: true });
    copyFileSync(join(templates, 'snap.sqlite'), file);
    copyFileSync(join(templates, 'snap.sqlite-wal'), file + '-wal');
  };
  resetTarget();
  expect(state(file)).toEqual({ marker: 'old', rows: OLD_ROWS + 10, integrity: 'ok' });

  const run = async (killAfterMs: number | undefined, afterStaged = false) => {
    const child = spawn(process.execPath, [CHILD, compiled.srcDir, target, 'app.sqlite', dataFile, JSON.stringify(artifact)], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    const t0 = performance.now();
    let stagedAt = 0;
    child.stdout.on('data', (d: Buffer) => {
      out += d;
      if (!stagedAt && out.includes('staged')) stagedAt = performance.now() - t0;
    });
    child.stderr.on('data', (d: Buffer) => (err += d));
    const exited = once(child, 'exit');
    if (killAfterMs !== undefined) {
      void (async () => {
        if (afterStaged) {
          while (!stagedAt && child.exitCode === null) await sleep(1);
        }
        await sleep(killAfterMs);
        child.kill('SIGKILL');
      })();
    }
    const [code, signal] = await exited;
    return { code, signal, out, err, ms: performance.now() - t0, stagedAt };
  };

  // One full run measures how long a restore takes, then the random kills spread over that time.
  const full = await run(undefined);
  expect(full.err).toBe('');
  expect(full.code).toBe(0);
  expect(state(file)).toEqual({ marker: 'new', rows: NEW_ROWS, integrity: 'ok' });
  expect(readdirSync(target).filter((n) => n.startsWith('app.sqlite'))).toEqual(['app.sqlite']);

  // Half the kills land anywhere in the run; the other half are spread over twice the time from
  // "staged" to exit, so they hit the commit (and some land after it: the target must then be new).
  const commitWindow = Math.max(2, full.ms - full.stagedAt);
  const outcomes = { old: 0, new: 0, killed: 0 };
  for (let i = 0; i < 16; i++) {
    resetTarget();
    const afterStaged = i % 2 === 1;
    const delay = afterStaged ? ((i - 1) / 14 + Math.random() / 8) * 2 * commitWindow : Math.random() * full.ms * 1.2;
    const result = await run(delay, afterStaged);
    if (result.signal === 'SIGKILL') outcomes.killed++;
    else expect(result.code, result.err).toBe(0);
    const after = state(file);
    expect(after.integrity).toBe('ok');
    if (after.marker === 'new') {
      expect(after.rows).toBe(NEW_ROWS);
      outcomes.new++;
    } else {
      expect(after).toEqual({ marker: 'old', rows: OLD_ROWS + 10, integrity: 'ok' });
      outcomes.old++;
    }
  }
  console.log(`sqlite kill test: ${JSON.stringify(outcomes)}, commit window ${commitWindow.toFixed(0)} ms of ${full.ms.toFixed(0)} ms`);
  // The random points covered both sides of the swap, and some runs really were killed.
  expect(outcomes.killed).toBeGreaterThan(0);
  expect(outcomes.old).toBeGreaterThan(0);
  expect(outcomes.new).toBeGreaterThan(0);

  // A later restore clears the temp files that killed runs left behind.
  resetTarget();
  expect((await run(undefined)).code).toBe(0);
  expect(readdirSync(target).filter((n) => n.startsWith('app.sqlite'))).toEqual(['app.sqlite']);
}, 180_000);

/** An empty folder at `path` (emptied when it exists). */
function freshDir(path: string): string {
  rmSync(path, { recursive: true, force: true });
  mkdirSync(path, { recursive: true });
  return path;
}
