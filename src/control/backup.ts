// Backup orchestration. Safe (default): prepare every session while traffic flows, hold traffic if the
// environment has a gateway, pin every session at once, release, then stream. Live: every session
// runs start to finish on its own, no hold. Either way every session is closed, whatever fails.
import type { Clock } from '../core/clock.js';
import { BunkerError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import type { BackupSession } from '../engines/engine.js';
import { holdTraffic as defaultHoldTraffic } from '../gateway/index.js';
import type { HoldOptions, HoldReport, TrafficHold } from '../gateway/types.js';
import type { Repository, ServiceArtifact, SnapshotManifest } from '../repo/types.js';
import type { CatalogDb } from './catalog.js';
import type { EnvironmentConfig, ProjectConfig } from './config.js';
import { createEngine, environmentUnits, forEachLimited, ProgressTracker, unitLabel, type Unit } from './units.js';

/** Sessions streaming into the repository at once: enough to overlap I/O, few enough for 2 cores. */
const STREAM_CONCURRENCY = 3;
export const HOLD_TIMEOUT_MS = 30_000;

export interface UnitSummary {
  type: string;
  size: number;
  warnings: string[];
}

export interface BackupSummary {
  services: Record<string, UnitSummary>;
  mounts: Record<string, UnitSummary>;
}

export interface OperationContext {
  config: ProjectConfig;
  db: CatalogDb;
  clock: Clock;
  repo: Repository;
  log: Logger;
  signal: AbortSignal;
  onProgress(percent: number, message?: string): void;
  /** The gateway's hold; injectable so the orchestration does not depend on a running proxy. */
  holdTraffic?: (options: HoldOptions) => Promise<TrafficHold | null>;
}

export interface BackupRequest {
  backupId: string;
  environment: EnvironmentConfig;
  live: boolean;
  /** The environment's last restore failed (maybe killed mid-commit): let each engine finish or undo it first. */
  recoverInterruptedRestore?: boolean;
}

export interface BackupOutcome {
  snapshotId: string;
  size: number;
  stored: number;
  pauseMs: number | null;
  summary: BackupSummary;
}

/** The artifacts of the environment's latest complete backup, for incremental engines. */
async function parentArtifacts(ctx: OperationContext, environment: string): Promise<SnapshotManifest | undefined> {
  const parent = await ctx.db
    .selectFrom('backups')
    .select(['id', 'snapshot_id'])
    .where('environment', '=', environment)
    .where('status', '=', 'complete')
    .where('restorable', '=', 1)
    .orderBy('created_at', 'desc')
    .executeTakeFirst();
  if (!parent?.snapshot_id) return undefined;
  try {
    return await ctx.repo.loadSnapshot(parent.snapshot_id);
  } catch (err) {
    ctx.log.warn(`the previous backup ${parent.id} could not be read (${(err as Error).message}); backing up everything afresh`);
    return undefined;
  }
}

export async function runBackup(ctx: OperationContext, request: BackupRequest): Promise<BackupOutcome> {
  const { environment: env, live } = request;
  const units = environmentUnits(env);
  if (units.length === 0) {
    throw new BunkerError('config_invalid', `environment ${env.name} has no services or mounts to back up`, {
      hint: `Add services or mounts under environments.${env.name} in ${ctx.config.file}.`,
    });
  }
  const now = ctx.clock.now().toISOString();
  await ctx.db
    .updateTable('backups')
    .set({ status: 'in_progress', updated_at: now })
    .where('id', '=', request.backupId)
    .execute();

  if (request.recoverInterruptedRestore) await recoverInterruptedRestore(ctx, env, units);

  // The handle may have written before (one process can run several activities): count this backup only.
  const storedBefore = ctx.repo.stats().storedBytes;
  const parent = await parentArtifacts(ctx, env.name);
  const tracker = new ProgressTracker(units.length, ctx.onProgress);
  const sessions: (BackupSession | undefined)[] = new Array(units.length);
  const artifacts: ServiceArtifact[] = new Array(units.length);
  let report: HoldReport | null = null;

  ctx.log.info(`${live ? 'Live' : 'Safe'} backup of ${env.name}: ${units.map(unitLabel).join(', ')}`);
  const open = async (unit: Unit, index: number): Promise<BackupSession> => {
    const engine = createEngine(ctx.config, env, unit, ctx.log);
    const session = await engine.openBackup({
      repo: ctx.repo,
      ...(parent?.[unit.kind][unit.name]?.engine === unit.config.type ? { parent: parent[unit.kind][unit.name] } : {}),
      log: ctx.log,
      progress: (p) => tracker.report(index, p, unit.name),
      signal: ctx.signal,
      mode: live ? 'live' : 'safe',
    });
    sessions[index] = session;
    return session;
  };

  try {
    if (live) {
      tracker.phase(0, 95);
      await forEachLimited(units, STREAM_CONCURRENCY, async (unit, i) => {
        const session = await open(unit, i);
        await session.prepare();
        await session.pin();
        artifacts[i] = await session.stream();
        tracker.report(i, 'done');
        ctx.log.info(`${unitLabel(unit)}: ${artifacts[i]!.size} bytes`);
      });
    } else {
      tracker.phase(0, 10);
      await forEachLimited(units, units.length, async (unit, i) => {
        const session = await open(unit, i);
        await session.prepare();
        tracker.report(i, 'done');
      });
      ctx.signal.throwIfAborted();
      report = await pinAll(ctx, env, sessions as BackupSession[], units.map(unitLabel));
      tracker.phase(12, 95);
      await forEachLimited(units, STREAM_CONCURRENCY, async (unit, i) => {
        artifacts[i] = await sessions[i]!.stream();
        tracker.report(i, 'done');
        ctx.log.info(`${unitLabel(unit)}: ${artifacts[i]!.size} bytes`);
      });
    }
  } finally {
    await Promise.all(sessions.map((s) => s?.close().catch((err) => ctx.log.warn(`closing a session failed: ${(err as Error).message}`))));
  }

  ctx.signal.throwIfAborted();
  const manifest: SnapshotManifest = {
    version: 1,
    time: ctx.clock.now().toISOString(),
    tags: { project: ctx.config.project, environment: env.name, backup: request.backupId, mode: live ? 'live' : 'safe' },
    services: {},
    mounts: {},
  };
  const summary: BackupSummary = { services: {}, mounts: {} };
  units.forEach((unit, i) => {
    const artifact = artifacts[i]!;
    manifest[unit.kind][unit.name] = artifact;
    summary[unit.kind][unit.name] = { type: unit.config.type, size: artifact.size, warnings: artifact.warnings };
    for (const w of artifact.warnings) ctx.log.warn(`${unitLabel(unit)}: ${w}`);
  });
  ctx.onProgress(96, 'saving the snapshot');
  const snapshotId = await ctx.repo.saveSnapshot(manifest);
  const size = artifacts.reduce((sum, a) => sum + a.size, 0);
  const stored = ctx.repo.stats().storedBytes - storedBefore;
  return { snapshotId, size, stored, pauseMs: report === null ? null : Math.round((report as HoldReport).pauseMs), summary };
}

/**
 * Lets every engine that can be left mid-commit by a killed restore finish or undo it, so the backup
 * captures the target wholly old or wholly new. A failure here fails the backup: better no backup
 * than one of a half-restored database.
 */
async function recoverInterruptedRestore(ctx: OperationContext, env: EnvironmentConfig, units: Unit[]): Promise<void> {
  for (const unit of units) {
    const engine = createEngine(ctx.config, env, unit, ctx.log);
    if (!engine.recover) continue;
    ctx.log.info(`${unitLabel(unit)}: checking for an interrupted restore (the last restore of ${env.name} failed)`);
    await engine.recover();
  }
}

/**
 * Pins every session inside one traffic hold (when the environment's gateway runs), always releasing.
 * Returns the hold report, or null when writes were not held.
 */
async function pinAll(
  ctx: OperationContext,
  env: EnvironmentConfig,
  sessions: BackupSession[],
  labels: string[],
): Promise<HoldReport | null> {
  const hold = env.gateway
    ? await (ctx.holdTraffic ?? defaultHoldTraffic)({
        stateDir: ctx.config.stateDir,
        environment: env.name,
        timeoutMs: HOLD_TIMEOUT_MS,
        log: ctx.log,
      })
    : null;
  if (!hold) {
    ctx.log.info(
      env.gateway
        ? `no gateway is running for ${env.name}: taking every consistent point together, but application writes were not held`
        : `${env.name} has no gateway: taking every consistent point together, but application writes were not held`,
    );
  }
  const started = Date.now();
  let report: HoldReport | null = null;
  try {
    // Each pin's time goes to the log: the slowest one is what the pause is made of.
    const pinMs = await Promise.all(
      sessions.map(async (s) => {
        const t = performance.now();
        await s.pin();
        return performance.now() - t;
      }),
    );
    ctx.log.info(`consistent points: ${labels.map((label, i) => `${label} ${pinMs[i]!.toFixed(1)} ms`).join(', ')}`);
  } finally {
    if (hold) {
      report = await hold.release();
      ctx.log.info(
        `traffic held for ${report.pauseMs} ms (${report.heldRequests} requests waited, ${report.rejectedRequests} turned away)`,
      );
    }
  }
  if (!hold) ctx.log.info(`consistent points taken in ${Date.now() - started} ms`);
  return report;
}
