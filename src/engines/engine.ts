// The engine contract: one implementation per service type (postgresql, mariadb, redis, sqlite,
// command) and one for mounts (files). The control plane drives every engine through the same phases,
// so safe backups can take every service's consistent point inside one short traffic hold.
import type { z } from 'zod';
import type { Logger } from '../core/log.js';
import type { RepoReader, RepoWriter, ServiceArtifact } from '../repo/types.js';

export interface Progress {
  /** Bytes read from the service so far, and the expected total when known. */
  bytes?: number;
  totalBytes?: number;
  message?: string;
}

/** Where an engine instance lives: paths in its config are relative to configDir. */
export interface EngineEnv {
  configDir: string;
  /** Scratch space the engine may use (inside the state dir); never a place for data the size of the service. */
  stateDir: string;
  log: Logger;
}

export interface ProbeResult {
  /** e.g. "PostgreSQL 15.19", "MariaDB 10.11.19", "Redis 7.0.15". */
  version: string;
  /** Logical size estimate in bytes, when cheap to know. */
  sizeEstimate?: number;
  details?: Record<string, unknown>;
}

export interface BackupContext {
  /** Writes the backup; getTree lets incremental engines read the parent's trees. */
  repo: RepoWriter & Pick<RepoReader, 'getTree'>;
  /** The same service's artifact in the environment's previous complete backup: incremental engines reuse it. */
  parent?: ServiceArtifact;
  log: Logger;
  progress(p: Progress): void;
  signal: AbortSignal;
  /** safe: the caller will call pin() on every service inside one traffic hold. live: no hold. */
  mode: 'safe' | 'live';
}

/**
 * One backup of one service. The control plane calls prepare() on every session, then (inside the
 * hold, for safe backups) pin() on every session, then stream(). close() always runs, also after failures.
 */
export interface BackupSession {
  /** Slow work that may run while traffic flows: connect, read the schema, pre-scan a mount. */
  prepare(): Promise<void>;
  /** Establishes the consistent point. Must be fast (milliseconds): traffic may be held meanwhile. */
  pin(): Promise<void>;
  /** Copies the data as of the pin into the repository. Runs after traffic is released. */
  stream(): Promise<ServiceArtifact>;
  /** Releases connections, snapshots and temporary state. Idempotent; safe after any failure. */
  close(): Promise<void>;
}

export interface RestoreOptions {
  /** Restore only these paths (mounts: relative paths inside the mount). */
  paths?: string[];
  /** Mounts too large to stage twice: write changed files in place (each via temp file + rename). */
  inPlace?: boolean;
}

export interface RestoreContext {
  repo: RepoReader;
  log: Logger;
  progress(p: Progress): void;
  signal: AbortSignal;
  options: RestoreOptions;
}

/**
 * One restore of one service. stage() builds the restored data beside the target (a shadow database,
 * a staging directory, a spare db index) without touching what the application uses; commit() swaps
 * it in quickly and atomically; abort() removes whatever stage() left. The target is wholly old or
 * wholly new whatever fails or is killed.
 */
export interface RestoreSession {
  stage(): Promise<void>;
  /** Fast, atomic swap; traffic may be held meanwhile. */
  commit(): Promise<void>;
  abort(): Promise<void>;
}

export interface Engine {
  readonly type: string;
  /** Connects and reports the version; throws a BunkerError (unreachable/engine) saying what is wrong. */
  probe(): Promise<ProbeResult>;
  openBackup(ctx: BackupContext): Promise<BackupSession>;
  openRestore(ctx: RestoreContext, artifact: ServiceArtifact): Promise<RestoreSession>;
  /**
   * Finishes or undoes a restore into this target whose process was killed, for engines whose commit
   * is not one atomic step: afterwards the target is wholly old or wholly new and nothing of the
   * interrupted restore is left beside it. Idempotent, and cheap when there is nothing to do. Every
   * restore's stage() does this itself; the control plane also calls it before backing up an
   * environment whose last restore failed, so a backup never captures a half-committed target.
   */
  recover?(): Promise<void>;
}

export interface EngineDescriptor<C = unknown> {
  /** The `type:` in bunker.yaml. */
  type: string;
  aliases?: readonly string[];
  /** services (databases, caches) or mounts (directories). */
  kind: 'service' | 'mount';
  /**
   * Builds the validator of the entry in bunker.yaml (without its `type` key) with the zod the caller
   * passes. Engine modules import zod's types only: loading zod (~95 modules, ~55 ms) is for code that
   * validates a config, not for every process that backs up or restores through an engine.
   */
  configSchema: (zod: typeof z) => z.ZodType<C>;
  create(name: string, config: C, env: EngineEnv): Engine;
}

/** Runs a backup session start to finish without a hold (live mode, tests). */
export async function runBackup(session: BackupSession): Promise<ServiceArtifact> {
  try {
    await session.prepare();
    await session.pin();
    return await session.stream();
  } finally {
    await session.close();
  }
}

/** Runs a restore session start to finish, aborting the stage on failure. */
export async function runRestore(session: RestoreSession): Promise<void> {
  try {
    await session.stage();
    await session.commit();
  } catch (err) {
    await session.abort().catch(() => {});
    throw err;
  }
}
