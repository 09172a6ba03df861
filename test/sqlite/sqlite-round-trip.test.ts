// sqlite engine: round trips through a real repository, backups under a live writer, bad inputs.
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync, existsSync, readdirSync } from 'node:fs';
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
