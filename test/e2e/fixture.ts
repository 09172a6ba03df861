// Sample data for the end-to-end tests: an SQLite table and a small tree of uploads per environment.
import Database from 'better-sqlite3';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';

/** Replaces the environment's data: `rows` orders in app.sqlite and `files` uploads, tagged with `tag`. */
export function seed(projectDir: string, env: string, tag: string, rows = 50, files = 5): void {
  const root = join(projectDir, env);
  rmSync(root, { recursive: true, force: true });
  mkdirSync(join(root, 'uploads', 'docs'), { recursive: true });
  const db = new Database(join(root, 'app.sqlite'));
  try {
    db.exec('CREATE TABLE orders (id INTEGER PRIMARY KEY, tag TEXT NOT NULL, n INTEGER NOT NULL)');
    const insert = db.prepare('INSERT INTO orders (tag, n) VALUES (?, ?)');
    db.transaction(() => {
      for (let i = 0; i < rows; i++) insert.run(tag, i);
    })();
  } finally {
    db.close();
  }
  for (let i = 0; i < files; i++) writeFileSync(join(root, 'uploads', 'docs', `doc-${i}.txt`), `${tag} document ${i}\n`);
}

/** Every row of the orders table, for comparisons. */
export function readRows(projectDir: string, env: string): { tag: string; n: number }[] {
  const db = new Database(join(projectDir, env, 'app.sqlite'), { readonly: true, fileMustExist: true });
  try {
    return db.prepare('SELECT tag, n FROM orders ORDER BY id').all() as { tag: string; n: number }[];
  } finally {
    db.close();
  }
}

/** Relative path → sha256 of every file under the environment's uploads. */
export function readUploads(projectDir: string, env: string): Record<string, string> {
  const root = join(projectDir, env, 'uploads');
  const out: Record<string, string> = {};
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else out[relative(root, path)] = createHash('sha256').update(readFileSync(path)).digest('hex');
    }
  };
  if (existsSync(root)) walk(root);
  return out;
}

export const BACKUP_NAME = /^Backup name: ([a-z2-7]{26})$/m;

export function backupName(stdout: string): string {
  const id = BACKUP_NAME.exec(stdout)?.[1];
  if (!id) throw new Error(`no "Backup name: ID" line in: ${stdout}`);
  return id;
}
