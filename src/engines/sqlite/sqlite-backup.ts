// Backup of one SQLite database while the application keeps writing.
//
// pin() opens a read transaction on Bunker's own connection: that is the consistent point, and it
// costs one page read. stream() then copies the database through SQLite's online backup API *from
// that same connection*, so every page comes from the pinned snapshot and the copy never restarts
// when the application commits meanwhile. The backup API writes to a file, so the copy goes to a
// temporary file in the state dir, is streamed into the repository, and is deleted.
//
// Writers: in WAL mode they never wait for us (the snapshot only keeps checkpoints from passing it,
// so the -wal grows until we finish the copy). In rollback-journal mode the read transaction is a
// SHARED lock: writers wait (their busy_timeout) until the local copy is done, which runs at disk speed;
// the slower repository upload happens after the lock is released.
import { createReadStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { BunkerError } from '../../core/errors.js';
import { newId } from '../../core/ids.js';
import type { ServiceArtifact } from '../../repo/types.js';
import type { BackupContext, BackupSession, EngineEnv } from '../engine.js';
import { SIDE_SUFFIXES, openDatabase, requireDatabaseFile, retryWhileBusy, sqliteError, unlinkIfPresent, type SqliteDb } from './sqlite-file.js';

/** Version of the artifact layout below; restore refuses formats it does not know. */
export const SQLITE_FORMAT = 1;
/** Pages copied per backup step: ~4 MiB with 4 KiB pages, a few ms of event-loop time per step. */
const PAGES_PER_STEP = 1024;

export class SqliteBackupSession implements BackupSession {
  private db: SqliteDb | undefined;
  private pinned = false;
  private tempFile: string | undefined;
  private journalMode = '';
  private pageSize = 0;

  constructor(
    private readonly service: string,
    private readonly file: string,
    private readonly env: EngineEnv,
    private readonly ctx: BackupContext,
  ) {}

  async prepare(): Promise<void> {
    await requireDatabaseFile(this.service, this.file);
    this.db = await openDatabase(this.service, this.file);
    this.journalMode = String(this.db.pragma('journal_mode', { simple: true }));
    this.pageSize = Number(this.db.pragma('page_size', { simple: true }));
    await mkdir(this.env.stateDir, { recursive: true });
  }

  async pin(): Promise<void> {
    const db = this.requireDb();
    try {
      // BEGIN alone is lazy: the first read takes the snapshot (WAL) or the SHARED lock (rollback journal).
      // In a safe backup traffic is held, so the lock is free at once; in a live one it may need retries.
      db.exec('BEGIN');
      await retryWhileBusy(db, () => db.prepare('SELECT count(*) FROM sqlite_schema').get());
      this.pinned = true;
    } catch (err) {
      throw sqliteError(this.service, this.file, err, 'pinning');
    }
  }

  async stream(): Promise<ServiceArtifact> {
    const db = this.requireDb();
    if (!this.pinned) throw new BunkerError('internal', 'sqlite backup: stream() called before pin()');
    const temp = join(this.env.stateDir, `sqlite-${this.service}-${newId()}.db`);
    this.tempFile = temp;
    const { signal, progress } = this.ctx;
    let copied: { totalPages: number };
    try {
      copied = await db.backup(temp, {
        progress: ({ totalPages, remainingPages }) => {
          if (signal.aborted) throw new BunkerError('aborted', `sqlite backup of "${this.service}" was cancelled`);
          progress({ bytes: (totalPages - remainingPages) * this.pageSize, totalBytes: totalPages * this.pageSize });
          return PAGES_PER_STEP;
        },
      });
    } catch (err) {
      throw sqliteError(this.service, this.file, err, 'copying');
    }
    this.release();

    const writer = this.ctx.repo.writeStream({ label: `sqlite:${this.service}` });
    await pipeline(createReadStream(temp), writer, { signal }).catch((err: unknown) => {
      throw signal.aborted ? new BunkerError('aborted', `sqlite backup of "${this.service}" was cancelled`) : err;
    });
    const ref = await writer.done();
    await unlinkIfPresent(temp);
    this.tempFile = undefined;
    progress({ bytes: ref.size, totalBytes: ref.size });
    return {
      engine: 'sqlite',
      format: SQLITE_FORMAT,
      streams: { database: ref },
      trees: {},
      meta: { journalMode: this.journalMode, pageSize: this.pageSize, pages: copied.totalPages },
      size: ref.size,
      warnings: [],
    };
  }

  async close(): Promise<void> {
    this.release();
    this.db?.close();
    this.db = undefined;
    if (this.tempFile) {
      for (const suffix of ['', ...SIDE_SUFFIXES]) await unlinkIfPresent(this.tempFile + suffix).catch(() => {});
      this.tempFile = undefined;
    }
  }

  /** Ends the read transaction so checkpoints (WAL) or writers (rollback journal) proceed. */
  private release(): void {
    if (this.db?.inTransaction) this.db.exec('ROLLBACK');
    this.pinned = false;
  }

  private requireDb(): SqliteDb {
    if (!this.db) throw new BunkerError('internal', 'sqlite backup: prepare() was not called');
    return this.db;
  }
}
