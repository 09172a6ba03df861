// sqlite: backs up an SQLite database file consistently while its application writes (online backup
// API from a pinned read transaction) and restores it through a verified temporary file renamed over
// the target. Design: docs/design/engine-sqlite-and-command.md.
import { isAbsolute, resolve } from 'node:path';
import type { z } from 'zod';
import type { BackupContext, Engine, EngineDescriptor, EngineEnv, ProbeResult, RestoreContext } from '../engine.js';
import type { ServiceArtifact } from '../../repo/types.js';
import { SqliteBackupSession } from './sqlite-backup.js';
import { SqliteRestoreSession } from './sqlite-restore.js';
import { openDatabase, requireDatabaseFile, sizeIfPresent } from './sqlite-file.js';

export const sqliteConfigSchema = (zod: typeof z) =>
  zod.strictObject({
    /** The database file, relative to the folder of bunker.yaml. */
    path: zod.string().min(1, 'path must name the SQLite database file'),
  });
export type SqliteConfig = z.infer<ReturnType<typeof sqliteConfigSchema>>;

class SqliteEngine implements Engine {
  readonly type = 'sqlite';
  private readonly file: string;

  constructor(
    private readonly name: string,
    config: SqliteConfig,
    private readonly env: EngineEnv,
  ) {
    this.file = isAbsolute(config.path) ? config.path : resolve(env.configDir, config.path);
  }

  async probe(): Promise<ProbeResult> {
    const size = await requireDatabaseFile(this.name, this.file);
    const db = await openDatabase(this.name, this.file);
    try {
      return {
        version: `SQLite ${String(db.prepare('SELECT sqlite_version()').pluck().get())}`,
        sizeEstimate: size + ((await sizeIfPresent(this.file + '-wal')) ?? 0),
        details: { path: this.file, journalMode: db.pragma('journal_mode', { simple: true }) },
      };
    } finally {
      db.close();
    }
  }

  async openBackup(ctx: BackupContext): Promise<SqliteBackupSession> {
    return new SqliteBackupSession(this.name, this.file, this.env, ctx);
  }

  async openRestore(ctx: RestoreContext, artifact: ServiceArtifact): Promise<SqliteRestoreSession> {
    return new SqliteRestoreSession(this.name, this.file, ctx, artifact);
  }
}

export const sqliteEngine: EngineDescriptor<SqliteConfig> = {
  type: 'sqlite',
  aliases: ['sqlite3'],
  kind: 'service',
  configSchema: sqliteConfigSchema,
  create: (name, config, env) => new SqliteEngine(name, config, env),
};

