// sqlite engine: round trips through a real repository, backups under a live writer, bad inputs.
import { z } from 'zod';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { chmodSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isBunkerError } from '../../src/core/errors.js';
import { runBackup, runRestore } from '../../src/engines/engine.js';
import { sqliteEngine } from '../../src/engines/sqlite/index.js';
import type { ServiceArtifact } from '../../src/repo/types.js';
import { createTestRepo, type TestRepo } from '../helpers/repo.js';
import { backupContext, engineEnv, restoreContext, tempDir } from './context.js';

const WRITER = join(import.meta.dirname, 'fixtures', 'ledger-writer.mjs');

let dir: ReturnType<typeof tempDir>;
let testRepo: TestRepo;
beforeAll(async () => {
  dir = tempDir('sqlite');
  testRepo = await createTestRepo();
});
afterAll(async () => {
  await testRepo?.cleanup();
  dir.remove();
});

function envDir(name: string): string {
  const path = join(dir.path, name);
  mkdirSync(path, { recursive: true });
  return path;
}

function createLedger(file: string, journalMode: 'wal' | 'delete', rows: number): void {
  const db = new Database(file);
  db.pragma(`journal_mode = ${journalMode}`);
  db.exec(`CREATE TABLE ledger (id INTEGER PRIMARY KEY, amount INTEGER NOT NULL, pad BLOB);
           CREATE TABLE totals (id INTEGER PRIMARY KEY, n INTEGER NOT NULL, sum INTEGER NOT NULL);
           CREATE INDEX ledger_amount ON ledger (amount);
           INSERT INTO totals VALUES (1, 0, 0);`);
  const insert = db.prepare('INSERT INTO ledger (amount, pad) VALUES (?, randomblob(?))');
  db.transaction(() => {
    let sum = 0;
    for (let i = 0; i < rows; i++) {
      const amount = (i * 7919) % 1000;
      insert.run(amount, 100 + (i % 300));
      sum += amount;
    }
    db.prepare('UPDATE totals SET n = ?, sum = ? WHERE id = 1').run(rows, sum);
  })();
  db.close();
}

/** A digest of every table's rows (in rowid order) and of the schema, for content comparison. */
function contentDigest(file: string): Record<string, string> {
  const db = new Database(file, { readonly: true });
  try {
    const digest = (rows: unknown[]) => {
      const hash = createHash('sha256');
      for (const row of rows) hash.update(JSON.stringify(row, (_k, v) => (v?.type === 'Buffer' ? Buffer.from(v.data).toString('hex') : v)));
      return `${rows.length}:${hash.digest('hex')}`;
    };
    const tables = db.prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name").pluck().all() as string[];
    const out: Record<string, string> = { __schema: digest(db.prepare('SELECT type, name, sql FROM sqlite_schema ORDER BY name').all()) };
    for (const t of tables) out[t] = digest(db.prepare(`SELECT * FROM "${t}" ORDER BY rowid`).all());
    return out;
  } finally {
    db.close();
  }
}

function ledgerState(file: string): { integrity: string; n: number; sum: number; rows: number; rowSum: number } {
  const db = new Database(file, { readonly: true });
  try {
    const integrity = (db.pragma('integrity_check') as { integrity_check: string }[]).map((r) => r.integrity_check).join(';');
    const t = db.prepare('SELECT n, sum FROM totals WHERE id = 1').get() as { n: number; sum: number };
    const l = db.prepare('SELECT count(*) AS rows, coalesce(sum(amount), 0) AS rowSum FROM ledger').get() as { rows: number; rowSum: number };
    return { integrity, ...t, ...l };
  } finally {
    db.close();
  }
}

async function backup(configDir: string, path: string, mode: 'safe' | 'live' = 'live'): Promise<ServiceArtifact> {
  const engine = sqliteEngine.create('db', { path }, engineEnv(configDir));
  return runBackup(await engine.openBackup(backupContext(testRepo.repo, mode)));
}

async function restore(configDir: string, path: string, artifact: ServiceArtifact): Promise<void> {
  const engine = sqliteEngine.create('db', { path }, engineEnv(configDir));
  await runRestore(await engine.openRestore(restoreContext(testRepo.repo), artifact));
}

/** The SQLite header fields the backup API rewrites in its copy: change counters and schema cookie. */
function withoutCounters(bytes: Buffer): Buffer {
  const copy = Buffer.from(bytes);
  for (const [at, len] of [[24, 4], [40, 4], [92, 4]] as const) copy.fill(0, at, at + len);
  return copy;
}

describe('sqlite engine round trip', () => {
  for (const mode of ['delete', 'wal'] as const) {
    it(`restores a ${mode}-mode database into another environment, content-equal and page-equal`, async () => {
      const source = envDir(`rt-${mode}-main`);
      createLedger(join(source, 'app.sqlite'), mode, 3000);
      const artifact = await backup(source, 'app.sqlite');
      expect(artifact.engine).toBe('sqlite');
      expect(artifact.meta.journalMode).toBe(mode);
      expect(artifact.size).toBe(readFileSync(join(source, 'app.sqlite')).length);

      const target = envDir(`rt-${mode}-staging`);
      await restore(target, 'data/app.sqlite', artifact); // folder created on the way
      const restored = join(target, 'data', 'app.sqlite');
      // Nothing left beside the target but the database itself, and no temp copy in the state dir.
      expect(readdirSync(join(target, 'data'))).toEqual(['app.sqlite']);
      expect(readdirSync(join(source, '.bunker'))).toEqual([]);
      expect(withoutCounters(readFileSync(restored)).equals(withoutCounters(readFileSync(join(source, 'app.sqlite'))))).toBe(true);
      expect(contentDigest(restored)).toEqual(contentDigest(join(source, 'app.sqlite')));
    });
  }

  it('replaces an existing WAL database whose latest commits live only in its -wal', async () => {
    const source = envDir('wal-old-main');
    createLedger(join(source, 'app.sqlite'), 'wal', 500);
    const artifact = await backup(source, 'app.sqlite');

    const target = envDir('wal-old-staging');
    const file = join(target, 'app.sqlite');
    createLedger(file, 'wal', 50);
    // An application that keeps its connection open with un-checkpointed commits in the -wal.
    const app = new Database(file);
    app.pragma('wal_autocheckpoint = 0');
    app.exec("CREATE TABLE marker (v TEXT); INSERT INTO marker VALUES ('old')");
    expect(readFileSync(file + '-wal').length).toBeGreaterThan(0);
    try {
      await restore(target, 'app.sqlite', artifact);
      expect(existsSync(file + '-wal')).toBe(false);
      expect(contentDigest(file)).toEqual(contentDigest(join(source, 'app.sqlite')));
      expect(ledgerState(file)).toMatchObject({ integrity: 'ok', n: 500, rows: 500 });
    } finally {
      app.close();
    }
    // The old connection closing afterwards must not damage the new file.
    expect(contentDigest(file)).toEqual(contentDigest(join(source, 'app.sqlite')));
  });
});

function startWriter(file: string): { child: ChildProcess; ready: Promise<void>; stop(): Promise<number> } {
  const child = spawn(process.execPath, [WRITER, file], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  const ready = (async () => {
    while (!out.includes('ready')) {
      if (child.exitCode !== null) throw new Error(`writer exited with ${child.exitCode}`);
      await sleep(10);
    }
  })();
  return {
    child,
    ready,
    async stop() {
      const exited = once(child, 'exit');
      child.kill('SIGTERM');
      const [code] = await exited;
      expect(code).toBe(0);
      return Number(/commits (\d+)/.exec(out)?.[1]);
    },
  };
}

function committedRows(file: string): number {
  const db = new Database(file, { timeout: 30_000 });
  try {
    return (db.prepare('SELECT n FROM totals WHERE id = 1').get() as { n: number }).n;
  } finally {
    db.close();
  }
}

describe('sqlite restore target details', () => {
  it('keeps the old file mode and a symlink to the database', async () => {
    const source = envDir('mode-src');
    createLedger(join(source, 'app.sqlite'), 'delete', 100);
    const artifact = await backup(source, 'app.sqlite');
    const target = envDir('mode-dst');
    mkdirSync(join(target, 'real'));
    createLedger(join(target, 'real', 'app.sqlite'), 'delete', 3);
    chmodSync(join(target, 'real', 'app.sqlite'), 0o640);
    symlinkSync('real/app.sqlite', join(target, 'link.sqlite'));
    await restore(target, 'link.sqlite', artifact);
    expect(lstatSync(join(target, 'link.sqlite')).isSymbolicLink()).toBe(true);
    expect(statSync(join(target, 'real', 'app.sqlite')).mode & 0o777).toBe(0o640);
    expect(ledgerState(join(target, 'real', 'app.sqlite'))).toMatchObject({ integrity: 'ok', n: 100 });
  });
});

describe('sqlite backup while the application writes', () => {
  it('WAL mode: the copy is the state at pin(), writers keep committing meanwhile', async () => {
    const source = envDir('busy-wal');
    const file = join(source, 'app.sqlite');
    createLedger(file, 'wal', 20_000);
    const writer = startWriter(file);
    try {
      await writer.ready;
      const engine = sqliteEngine.create('db', { path: 'app.sqlite' }, engineEnv(source));
      const session = await engine.openBackup(backupContext(testRepo.repo, 'safe'));
      let artifact: ServiceArtifact;
      let before: number, after: number, afterStream: number;
      let pinMs: number;
      try {
        await session.prepare();
        before = committedRows(file);
        const t0 = performance.now();
        await session.pin();
        pinMs = performance.now() - t0;
        after = committedRows(file);
        await sleep(300); // the application runs on while the backup streams
        artifact = await session.stream();
        afterStream = committedRows(file);
      } finally {
        await session.close();
      }
      await writer.stop();
      expect(pinMs).toBeLessThan(1000);

      const target = envDir('busy-wal-restore');
      await restore(target, 'app.sqlite', artifact);
      const copy = ledgerState(join(target, 'app.sqlite'));
      expect(copy.integrity).toBe('ok');
      expect(copy.rows).toBe(copy.n);
      expect(copy.rowSum).toBe(copy.sum);
      expect(copy.n).toBeGreaterThanOrEqual(before);
      expect(copy.n).toBeLessThanOrEqual(after);
      // The writer was not blocked by the pinned snapshot: it committed past it during the backup.
      expect(afterStream).toBeGreaterThan(copy.n);
    } finally {
      if (writer.child.exitCode === null) writer.child.kill('SIGKILL');
    }
  });

  it('rollback-journal mode: the copy is consistent and the writer survives the short lock', async () => {
    const source = envDir('busy-delete');
    const file = join(source, 'app.sqlite');
    createLedger(file, 'delete', 20_000);
    const writer = startWriter(file);
    try {
      await writer.ready;
      const artifact = await backup(source, 'app.sqlite');
      const commits = await writer.stop();
      expect(commits).toBeGreaterThan(20);
      const target = envDir('busy-delete-restore');
      await restore(target, 'app.sqlite', artifact);
      const copy = ledgerState(join(target, 'app.sqlite'));
      expect(copy).toMatchObject({ integrity: 'ok', rows: copy.n, rowSum: copy.sum });
      expect(copy.n).toBeGreaterThanOrEqual(20_000);
      expect(ledgerState(file)).toMatchObject({ integrity: 'ok' });
    } finally {
      if (writer.child.exitCode === null) writer.child.kill('SIGKILL');
    }
  });
});

async function expectBunkerError(promise: Promise<unknown>, code: string, message: RegExp): Promise<void> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(isBunkerError(err), `expected a BunkerError, got ${String(err)}`).toBe(true);
  expect((err as { code: string }).code).toBe(code);
  expect((err as Error).message).toMatch(message);
}

describe('sqlite bad input', () => {
  it('rejects a config without a path, or with unknown keys', () => {
    expect(sqliteEngine.configSchema(z).safeParse({}).success).toBe(false);
    expect(sqliteEngine.configSchema(z).safeParse({ path: '' }).success).toBe(false);
    expect(sqliteEngine.configSchema(z).safeParse({ path: 'a.db', url: 'x' }).success).toBe(false);
    expect(sqliteEngine.configSchema(z).safeParse({ path: 'a.db' }).success).toBe(true);
  });

  it('says when the database file is missing', async () => {
    const source = envDir('missing');
    const engine = sqliteEngine.create('db', { path: 'nope.sqlite' }, engineEnv(source));
    await expectBunkerError(engine.probe(), 'unreachable', /nope\.sqlite does not exist/);
    await expectBunkerError(backup(source, 'nope.sqlite'), 'unreachable', /does not exist/);
    expect(existsSync(join(source, 'nope.sqlite'))).toBe(false);
  });

  it('says when the file is not a database, and leaves it alone', async () => {
    const source = envDir('notdb');
    const file = join(source, 'notes.txt');
    const text = 'these are not the pages you are looking for\n'.repeat(200);
    writeFileSync(file, text);
    const engine = sqliteEngine.create('db', { path: 'notes.txt' }, engineEnv(source));
    await expectBunkerError(engine.probe(), 'engine', /is not an SQLite database/);
    await expectBunkerError(backup(source, 'notes.txt'), 'engine', /is not an SQLite database/);
    expect(readFileSync(file, 'utf8')).toBe(text);
  });

  it('a cancelled backup fails as aborted and leaves no temp copy', async () => {
    const source = envDir('cancel');
    createLedger(join(source, 'app.sqlite'), 'wal', 5000);
    const controller = new AbortController();
    const engine = sqliteEngine.create('db', { path: 'app.sqlite' }, engineEnv(source));
    const session = await engine.openBackup({ ...backupContext(testRepo.repo), signal: controller.signal });
    await session.prepare();
    await session.pin();
    controller.abort();
    await expectBunkerError(session.stream(), 'aborted', /cancelled/);
    await session.close();
    expect(readdirSync(join(source, '.bunker'))).toEqual([]);
    expect(ledgerState(join(source, 'app.sqlite'))).toMatchObject({ integrity: 'ok', n: 5000 });
  });

  it('probe reports the version and journal mode', async () => {
    const source = envDir('probe');
    createLedger(join(source, 'app.sqlite'), 'wal', 10);
    const result = await sqliteEngine.create('db', { path: 'app.sqlite' }, engineEnv(source)).probe();
    expect(result.version).toMatch(/^SQLite 3\.\d+\.\d+$/);
    expect(result.details?.journalMode).toBe('wal');
    expect(result.sizeEstimate).toBeGreaterThan(0);
  });

  it('refuses a target folder it cannot create', async () => {
    const source = envDir('unwritable-src');
    createLedger(join(source, 'app.sqlite'), 'delete', 10);
    const artifact = await backup(source, 'app.sqlite');
    const target = envDir('unwritable-dst');
    writeFileSync(join(target, 'data'), 'a file where a folder should be');
    await expectBunkerError(restore(target, 'data/app.sqlite', artifact), 'engine', /cannot create folder .*data/);
  });

  it('gives up with "locked" when the application keeps a write transaction open, changing nothing', async () => {
    const source = envDir('locked-src');
    createLedger(join(source, 'app.sqlite'), 'wal', 100);
    const artifact = await backup(source, 'app.sqlite');
    const target = envDir('locked-dst');
    const file = join(target, 'app.sqlite');
    createLedger(file, 'wal', 9);
    const app = new Database(file);
    app.exec('BEGIN IMMEDIATE; UPDATE totals SET n = n WHERE id = 1');
    try {
      await expectBunkerError(restore(target, 'app.sqlite', artifact), 'locked', /app\.sqlite/);
    } finally {
      app.exec('ROLLBACK');
      app.close();
    }
    expect(readdirSync(target)).toEqual(['app.sqlite']);
    expect(ledgerState(file)).toMatchObject({ integrity: 'ok', n: 9, rows: 9 });
  });

  it('refuses damaged backups and leaves the target as it was', async () => {
    const source = envDir('damaged-src');
    createLedger(join(source, 'app.sqlite'), 'delete', 2000);
    const good = await backup(source, 'app.sqlite');
    const target = envDir('damaged-dst');
    createLedger(join(target, 'app.sqlite'), 'delete', 7);
    const before = readFileSync(join(target, 'app.sqlite'));

    const bytes = readFileSync(join(source, 'app.sqlite'));
    // Garbage instead of a database.
    const garbage = { ...good, streams: { database: await testRepo.repo.storeBuffer(Buffer.alloc(8192, 0x5a)) } };
    await expectBunkerError(restore(target, 'app.sqlite', garbage), 'engine', /not an SQLite database/);
    // A real header with pages missing: only integrity_check notices.
    const truncated = { ...good, streams: { database: await testRepo.repo.storeBuffer(bytes.subarray(0, bytes.length / 2)) } };
    await expectBunkerError(restore(target, 'app.sqlite', truncated), 'corrupt', /integrity/);
    // Another engine's artifact, and an unknown format.
    await expectBunkerError(restore(target, 'app.sqlite', { ...good, engine: 'redis' }), 'target_mismatch', /redis/);
    await expectBunkerError(restore(target, 'app.sqlite', { ...good, format: 99 }), 'not_restorable', /format 99/);

    expect(readFileSync(join(target, 'app.sqlite')).equals(before)).toBe(true);
    expect(readdirSync(target)).toEqual(['app.sqlite']);
  });
});
