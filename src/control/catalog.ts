// The catalog: environments, backups and activities. Kysely over better-sqlite3 in embedded mode; the
// schema and every query stay within what PostgreSQL also runs (text timestamps in ISO 8601, integer
// flags, no SQLite-only functions), so the server mode can swap the dialect and keep the code.
import Database from 'better-sqlite3';
import { Kysely, Migrator, SqliteDialect, type Migration, type MigrationProvider } from 'kysely';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { BunkerError } from '../core/errors.js';

export type ActivityType = 'environment.backup' | 'environment.restore' | 'environment.backup.delete';
export type ActivityState = 'pending' | 'in_progress' | 'complete' | 'cancelled';
export type ActivityResult = 'success' | 'failure';
export type BackupStatus = 'pending' | 'in_progress' | 'complete' | 'failed' | 'deleted';

export interface EnvironmentTable {
  name: string;
  type: string;
  /** 1 active, 0 inactive. */
  active: number;
  created_at: string;
  updated_at: string;
}

export interface BackupTable {
  id: string;
  environment: string;
  activity_id: string | null;
  created_at: string;
  updated_at: string;
  expires_at: string | null;
  status: BackupStatus;
  /** 1 safe (one consistent point for every service), 0 live. */
  safe: number;
  automated: number;
  restorable: number;
  /** Logical bytes of every service and mount. */
  size: number;
  /** Bytes newly added to the repository by this backup. */
  stored: number;
  pause_ms: number | null;
  /** JSON: { services: {name: UnitSummary}, mounts: {name: UnitSummary} }. */
  summary: string;
  snapshot_id: string | null;
  error: string | null;
}

export interface ActivityTable {
  id: string;
  type: ActivityType;
  environment: string;
  state: ActivityState;
  result: ActivityResult | null;
  /** 0–100. */
  progress: number;
  /** JSON of the activity's parameters (backup id, live, target, services). */
  params: string;
  backup_id: string | null;
  created_at: string;
  started_at: string | null;
  completed_at: string | null;
  updated_at: string;
  /** The process that runs (or waits to run) the activity, and where. */
  worker_pid: number | null;
  worker_host: string | null;
  heartbeat_at: string | null;
  error: string | null;
}

export interface ActivityLogTable {
  activity_id: string;
  seq: number;
  at: string;
  level: string;
  message: string;
}

export interface CatalogSchema {
  environments: EnvironmentTable;
  backups: BackupTable;
  activities: ActivityTable;
  activity_log: ActivityLogTable;
}

export type CatalogDb = Kysely<CatalogSchema>;

const migrations: Record<string, Migration> = {
  '0001_initial': {
    async up(db: Kysely<any>) {
      await db.schema
        .createTable('environments')
        .addColumn('name', 'text', (c) => c.primaryKey())
        .addColumn('type', 'text', (c) => c.notNull())
        .addColumn('active', 'integer', (c) => c.notNull().defaultTo(1))
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('updated_at', 'text', (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('backups')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('environment', 'text', (c) => c.notNull())
        .addColumn('activity_id', 'text')
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('updated_at', 'text', (c) => c.notNull())
        .addColumn('expires_at', 'text')
        .addColumn('status', 'text', (c) => c.notNull())
        .addColumn('safe', 'integer', (c) => c.notNull())
        .addColumn('automated', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('restorable', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('size', 'bigint', (c) => c.notNull().defaultTo(0))
        .addColumn('stored', 'bigint', (c) => c.notNull().defaultTo(0))
        .addColumn('pause_ms', 'integer')
        .addColumn('summary', 'text', (c) => c.notNull().defaultTo('{}'))
        .addColumn('snapshot_id', 'text')
        .addColumn('error', 'text')
        .execute();
      await db.schema.createIndex('backups_environment_created').on('backups').columns(['environment', 'created_at']).execute();
      await db.schema
        .createTable('activities')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('type', 'text', (c) => c.notNull())
        .addColumn('environment', 'text', (c) => c.notNull())
        .addColumn('state', 'text', (c) => c.notNull())
        .addColumn('result', 'text')
        .addColumn('progress', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('params', 'text', (c) => c.notNull().defaultTo('{}'))
        .addColumn('backup_id', 'text')
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('started_at', 'text')
        .addColumn('completed_at', 'text')
        .addColumn('updated_at', 'text', (c) => c.notNull())
        .addColumn('worker_pid', 'integer')
        .addColumn('worker_host', 'text')
        .addColumn('heartbeat_at', 'text')
        .addColumn('error', 'text')
        .execute();
      await db.schema.createIndex('activities_environment_state').on('activities').columns(['environment', 'state']).execute();
      await db.schema
        .createTable('activity_log')
        .addColumn('activity_id', 'text', (c) => c.notNull())
        .addColumn('seq', 'integer', (c) => c.notNull())
        .addColumn('at', 'text', (c) => c.notNull())
        .addColumn('level', 'text', (c) => c.notNull())
        .addColumn('message', 'text', (c) => c.notNull())
        .addPrimaryKeyConstraint('activity_log_pk', ['activity_id', 'seq'])
        .execute();
    },
  },
};

const provider: MigrationProvider = { getMigrations: async () => migrations };

export const CATALOG_FILE = 'catalog.sqlite';

/**
 * Opens (creating and migrating when needed) the catalog in `stateDir`. Several processes share it
 * (the CLI, detached workers): WAL lets readers run beside the one writer, and busy_timeout makes a
 * writer wait its turn instead of failing.
 */
export async function openCatalog(stateDir: string, options: { create?: boolean } = {}): Promise<CatalogDb> {
  const file = join(stateDir, CATALOG_FILE);
  if (options.create) mkdirSync(stateDir, { recursive: true });
  else if (!existsSync(file)) {
    throw new BunkerError('repo_not_found', `the project is not initialised (no catalog in ${stateDir})`, {
      hint: 'Run `bunker init` first.',
    });
  }
  let sqlite: Database.Database;
  try {
    sqlite = new Database(file, { fileMustExist: !options.create });
  } catch (err) {
    throw new BunkerError('storage', `cannot open the catalog ${file}: ${(err as Error).message}`, { cause: err });
  }
  sqlite.pragma('busy_timeout = 10000');
  sqlite.pragma('journal_mode = WAL');
  sqlite.pragma('synchronous = NORMAL');
  const db = new Kysely<CatalogSchema>({ dialect: new SqliteDialect({ database: sqlite }) });
  const { error } = await new Migrator({ db, provider }).migrateToLatest();
  if (error) {
    await db.destroy();
    throw new BunkerError('storage', `cannot migrate the catalog ${file}: ${(error as Error).message ?? error}`, { cause: error });
  }
  return db;
}
