// Helpers shared by the sqlite backup and restore sessions: opening a database with errors that say
// what is wrong, and the side files (-wal, -shm, -journal) that belong to a database path.
import { constants as fsConstants } from 'node:fs';
import { access, open, stat, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import { BunkerError } from '../../core/errors.js';

export type SqliteDb = Database.Database;

/** Files SQLite keeps beside a database; they describe the file at that path, not any other. */
export const SIDE_SUFFIXES = ['-wal', '-shm', '-journal'] as const;

export function isMissing(err: unknown): boolean {
  return (err as NodeJS.ErrnoException)?.code === 'ENOENT';
}

/** Throws a clear error when `file` does not exist or is not a regular file. */
export async function requireDatabaseFile(service: string, file: string): Promise<number> {
  let info;
  try {
    info = await stat(file);
  } catch (err) {
    if (isMissing(err)) {
      throw new BunkerError('unreachable', `sqlite service "${service}": database file ${file} does not exist`, {
        hint: 'Check `path` in bunker.yaml (relative to the folder of bunker.yaml).',
        cause: err,
      });
    }
    throw new BunkerError('unreachable', `sqlite service "${service}": cannot read ${file}: ${(err as Error).message}`, { cause: err });
  }
  if (!info.isFile()) {
    throw new BunkerError('engine', `sqlite service "${service}": ${file} is not a regular file`, {
      hint: '`path` must name the SQLite database file itself.',
    });
  }
  return info.size;
}

/** How long Bunker waits for a read lock that the application's writers keep taking. */
export const READ_LOCK_WAIT_MS = 15_000;

/**
 * Runs `attempt` (a statement that needs a read lock) until it stops failing with SQLITE_BUSY.
 * In rollback-journal mode a busy writer leaves only short gaps between its commits; SQLite's own busy
 * handler sleeps in growing steps (up to 100 ms) and can miss every gap, so this polls every
 * millisecond instead.
 */
export async function retryWhileBusy<T>(db: SqliteDb, attempt: () => T, waitMs = READ_LOCK_WAIT_MS): Promise<T> {
  const previous = Number(db.pragma('busy_timeout', { simple: true }));
  db.pragma('busy_timeout = 0');
  try {
    const deadline = performance.now() + waitMs;
    for (;;) {
      try {
        return attempt();
      } catch (err) {
        if ((err as { code?: string }).code !== 'SQLITE_BUSY' || performance.now() > deadline) throw err;
      }
      await sleep(1);
    }
  } finally {
    db.pragma(`busy_timeout = ${previous}`);
  }
}

/**
 * Opens an existing database and proves it is one by reading its schema (better-sqlite3 opens any file
 * lazily; "file is not a database" only shows on the first read).
 */
export async function openDatabase(service: string, file: string): Promise<SqliteDb> {
  let db: SqliteDb | undefined;
  try {
    db = new Database(file, { fileMustExist: true, timeout: 5000 });
    const opened = db;
    await retryWhileBusy(opened, () => opened.prepare('SELECT count(*) FROM sqlite_schema').get());
    return db;
  } catch (err) {
    db?.close();
    throw sqliteError(service, file, err);
  }
}

/** Maps an SQLite error to a BunkerError that names the service and file and says what to do. */
export function sqliteError(service: string, file: string, err: unknown, doing = 'reading'): BunkerError {
  if (err instanceof BunkerError) return err;
  const code = (err as { code?: string })?.code ?? '';
  const text = err instanceof Error ? err.message : String(err);
  if (code === 'SQLITE_NOTADB') {
    return new BunkerError('engine', `sqlite service "${service}": ${file} is not an SQLite database`, {
      hint: '`path` must name an SQLite 3 database file.',
      cause: err,
    });
  }
  if (code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED') {
    return new BunkerError('locked', `sqlite service "${service}": ${file} stayed locked by another connection while ${doing} it`, {
      hint: 'Retry when the application is not writing, or use a safe backup/restore, which holds its traffic.',
      cause: err,
    });
  }
  if (code === 'SQLITE_CORRUPT') {
    return new BunkerError('corrupt', `sqlite service "${service}": ${file} is corrupt (${text})`, { cause: err });
  }
  if (code === 'SQLITE_CANTOPEN' || code === 'SQLITE_READONLY' || code === 'SQLITE_PERM') {
    return new BunkerError('engine', `sqlite service "${service}": cannot open ${file} (${text})`, {
      hint: `Check that ${dirname(file)} and the database file are readable and writable by this user.`,
      cause: err,
    });
  }
  return new BunkerError('engine', `sqlite service "${service}": ${doing} ${file} failed: ${text}`, { cause: err });
}

/** Throws a clear error when Bunker cannot create files in `dir` (the temp file must sit beside the target). */
export async function requireWritableDir(service: string, dir: string): Promise<void> {
  try {
    await access(dir, fsConstants.W_OK | fsConstants.X_OK);
  } catch (err) {
    throw new BunkerError('engine', `sqlite service "${service}": cannot write to ${dir} (${(err as NodeJS.ErrnoException).code ?? 'error'})`, {
      hint: 'The restore writes a temporary file beside the database: make that folder writable by this user.',
      cause: err,
    });
  }
}

export async function unlinkIfPresent(file: string): Promise<boolean> {
  try {
    await unlink(file);
    return true;
  } catch (err) {
    if (isMissing(err)) return false;
    throw err;
  }
}

/** fsync a directory so a rename or unlink inside it is durable. */
export async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

export async function sizeIfPresent(file: string): Promise<number | undefined> {
  try {
    return (await stat(file)).size;
  } catch (err) {
    if (isMissing(err)) return undefined;
    throw err;
  }
}
