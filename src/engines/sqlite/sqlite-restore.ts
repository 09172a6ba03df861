// Restore of one SQLite database: build a verified copy beside the target, then swap it in by rename.
//
// stage() writes `<db>.bunker-restore-<id>` in the target's folder (same filesystem, so the rename is
// atomic), fsyncs it and runs PRAGMA integrity_check on it. commit() makes the old database's side
// files harmless before the rename: a stale -wal would be replayed onto the new file and corrupt it,
// so the old -wal is checkpointed and truncated to zero bytes first, under a write lock that keeps the
// application from appending to it until the rename is done. Then the new file is renamed over the
// target and the old -wal/-shm/-journal are unlinked. A kill before the rename leaves the old database
// (with its WAL folded in); a kill after it leaves the new one beside, at worst, an empty -wal.
import { createWriteStream } from 'node:fs';
import { chmod, chown, mkdir, open, readdir, realpath, rename, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import { BunkerError } from '../../core/errors.js';
import { newId } from '../../core/ids.js';
import type { ServiceArtifact, StreamRef } from '../../repo/types.js';
import type { RestoreContext, RestoreSession } from '../engine.js';
import { SQLITE_FORMAT } from './sqlite-backup.js';
import {
  SIDE_SUFFIXES,
  isMissing,
  requireWritableDir,
  sizeIfPresent,
  sqliteError,
  syncDir,
  unlinkIfPresent,
  type SqliteDb,
} from './sqlite-file.js';

const TEMP_MARKER = '.bunker-restore-';
/** How long commit() waits for the application's readers/writers to let go of the old database. */
const LOCK_WAIT_MS = 5000;

export class SqliteRestoreSession implements RestoreSession {
  private dir: string;
  private tempFile: string | undefined;
  private staged = false;

  constructor(
    private readonly service: string,
    private target: string,
    private readonly ctx: RestoreContext,
    private readonly artifact: ServiceArtifact,
  ) {
    this.dir = dirname(target);
  }

  async stage(): Promise<void> {
    const ref = this.streamRef();
    // A symlinked database is replaced where it really lives, keeping the link.
    this.target = await realpath(this.target).catch(() => this.target);
    this.dir = dirname(this.target);
    try {
      await mkdir(this.dir, { recursive: true });
    } catch (err) {
      throw new BunkerError('engine', `sqlite service "${this.service}": cannot create folder ${this.dir} (${(err as NodeJS.ErrnoException).code})`, {
        hint: 'Create the folder or fix the `path` in bunker.yaml.',
        cause: err,
      });
    }
    await requireWritableDir(this.service, this.dir);
    await this.removeStaleTemps();

    const temp = join(this.dir, `${basename(this.target)}${TEMP_MARKER}${newId()}`);
    this.tempFile = temp;
    let written = 0;
    const counter = this.ctx.repo.readStream(ref);
    counter.on('data', (chunk: Buffer) => {
      written += chunk.length;
      this.ctx.progress({ bytes: written, totalBytes: ref.size });
    });
    await pipeline(counter, createWriteStream(temp, { flags: 'wx', mode: 0o600 }), { signal: this.ctx.signal }).catch((err: unknown) => {
      throw this.ctx.signal.aborted ? new BunkerError('aborted', `sqlite restore of "${this.service}" was cancelled`) : err;
    });
    const handle = await open(temp, 'r+');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
    if (written !== ref.size) {
      throw new BunkerError('corrupt', `sqlite service "${this.service}": the stored database has ${written} bytes, expected ${ref.size}`);
    }
    this.verify(temp);
    await this.copyOwnership(temp);
    this.staged = true;
  }

  async commit(): Promise<void> {
    if (!this.staged || !this.tempFile) throw new BunkerError('internal', 'sqlite restore: commit() before a successful stage()');
    const temp = this.tempFile;
    const old = await this.lockOldDatabase();
    try {
      await rename(temp, this.target);
      this.tempFile = undefined;
      await syncDir(this.dir);
    } finally {
      // Our connection is on the old (now unlinked) inode; closing it may checkpoint into that inode only.
      if (old?.inTransaction) old.exec('ROLLBACK');
      old?.close();
    }
    // The old side files now describe a file that no longer has this name. Unlinking them makes the next
    // connection start fresh instead of sharing a wal-index with connections still open on the old file.
    for (const suffix of SIDE_SUFFIXES) await unlinkIfPresent(this.target + suffix);
    await syncDir(this.dir);
    this.staged = false;
  }

  async abort(): Promise<void> {
    if (!this.tempFile) return;
    for (const file of [this.tempFile, ...SIDE_SUFFIXES.map((s) => this.tempFile + s)]) await unlinkIfPresent(file).catch(() => {});
    this.tempFile = undefined;
    this.staged = false;
  }

  private streamRef(): StreamRef {
    const { artifact } = this;
    if (artifact.engine !== 'sqlite') {
      throw new BunkerError('target_mismatch', `service "${this.service}" is sqlite but the backup holds a ${artifact.engine} service`);
    }
    if (artifact.format !== SQLITE_FORMAT) {
      throw new BunkerError('not_restorable', `sqlite backup format ${artifact.format} is not known to this Bunker`, {
        hint: 'Restore it with the Bunker version that made the backup, or a newer one.',
      });
    }
    const ref = artifact.streams.database;
    if (!ref) throw new BunkerError('not_restorable', `the backup of sqlite service "${this.service}" has no database stream`);
    return ref;
  }

  /** Opens the staged copy and proves it is a whole, uncorrupted database. */
  private verify(temp: string): void {
    let db: SqliteDb | undefined;
    try {
      db = new Database(temp, { fileMustExist: true });
      const rows = db.pragma('integrity_check') as { integrity_check: string }[];
      const problems = rows.map((r) => r.integrity_check).filter((r) => r !== 'ok');
      if (problems.length > 0) {
        throw new BunkerError('corrupt', `sqlite service "${this.service}": the restored copy fails PRAGMA integrity_check: ${problems.slice(0, 5).join('; ')}`, {
          hint: `${this.target} was not touched. Run \`bunker repo:check --read-data\`, or restore an older backup.`,
        });
      }
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === 'SQLITE_CORRUPT' || code === 'SQLITE_NOTADB') {
        const what = code === 'SQLITE_NOTADB' ? 'is not an SQLite database' : `fails PRAGMA integrity_check (${(err as Error).message})`;
        throw new BunkerError(code === 'SQLITE_NOTADB' ? 'engine' : 'corrupt', `sqlite service "${this.service}": the backed-up copy ${what}`, {
          hint: `${this.target} was not touched. Run \`bunker repo:check --read-data\`, or restore an older backup.`,
          cause: err,
        });
      }
      throw sqliteError(this.service, temp, err, 'verifying');
    } finally {
      db?.close();
    }
  }

  /**
   * Folds the old database's WAL into its file, truncates the -wal to zero bytes and takes the write
   * lock, so nothing can append to that -wal before the rename. Returns the locked connection, or
   * undefined when there is no old database (or it is not one: it is replaced as it is).
   */
  private async lockOldDatabase(): Promise<SqliteDb | undefined> {
    const oldSize = await sizeIfPresent(this.target);
    if (oldSize === undefined) return undefined;
    let db: SqliteDb;
    try {
      db = new Database(this.target, { fileMustExist: true, timeout: LOCK_WAIT_MS });
      // Reading resolves a hot journal (rolls back an interrupted write) before we judge the file.
      db.prepare('SELECT count(*) FROM sqlite_schema').get();
    } catch (err) {
      if ((err as { code?: string }).code === 'SQLITE_NOTADB' || (err as { code?: string }).code === 'SQLITE_CORRUPT') {
        this.ctx.log.warn(`sqlite service "${this.service}": ${this.target} was not a readable database; replacing it`);
        return undefined;
      }
      throw sqliteError(this.service, this.target, err, 'locking');
    }
    const deadline = Date.now() + LOCK_WAIT_MS;
    try {
      for (;;) {
        const wal = String(db.pragma('journal_mode', { simple: true })) === 'wal';
        if (wal) {
          const [result] = db.pragma('wal_checkpoint(TRUNCATE)') as { busy: number }[];
          if (result?.busy) {
            if (Date.now() > deadline) throw this.inUse();
            await sleep(50);
            continue;
          }
        }
        db.exec('BEGIN IMMEDIATE');
        // A writer may have appended between the checkpoint and the lock: then start over.
        if (wal && ((await sizeIfPresent(this.target + '-wal')) ?? 0) > 0) {
          db.exec('ROLLBACK');
          if (Date.now() > deadline) throw this.inUse();
          continue;
        }
        return db;
      }
    } catch (err) {
      if (db.inTransaction) db.exec('ROLLBACK');
      db.close();
      throw sqliteError(this.service, this.target, err, 'locking');
    }
  }

  private inUse(): BunkerError {
    return new BunkerError('locked', `sqlite service "${this.service}": ${this.target} stayed busy for ${LOCK_WAIT_MS / 1000} s, so its write-ahead log could not be folded in before the swap`, {
      hint: 'Stop the application (or use a safe restore, which holds its traffic) and retry; the database was not changed.',
    });
  }

  /** The new file takes the old one's mode and owner, so the application can still open it for writing. */
  private async copyOwnership(temp: string): Promise<void> {
    const old = await stat(this.target).catch((err) => (isMissing(err) ? undefined : Promise.reject(err)));
    if (!old) {
      await chmod(temp, 0o644 & ~process.umask());
      return;
    }
    await chmod(temp, old.mode & 0o7777);
    const mine = await stat(temp);
    if (mine.uid !== old.uid || mine.gid !== old.gid) {
      await chown(temp, old.uid, old.gid).catch(() => {
        this.ctx.log.warn(`sqlite service "${this.service}": could not give the restored ${this.target} its old owner ${old.uid}:${old.gid}`);
      });
    }
  }

  /** Removes temp files that a killed restore left beside the target. */
  private async removeStaleTemps(): Promise<void> {
    const prefix = basename(this.target) + TEMP_MARKER;
    for (const name of await readdir(this.dir)) {
      if (name.startsWith(prefix)) await unlinkIfPresent(join(this.dir, name));
    }
  }
}
