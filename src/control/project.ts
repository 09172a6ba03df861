// The control plane's service layer: one Project per bunker.yaml. The CLI (and later the HTTP API)
// calls these methods only; they own the catalog, the activity queue and the repository handle.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, openSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { systemClock, type Clock } from '../core/clock.js';
import { asBunkerError, BunkerError, isBunkerError } from '../core/errors.js';
import { newId, ID_PATTERN } from '../core/ids.js';
import { launchEnv, NODE_FLAGS } from '../core/node-flags.js';
import type { Logger, LogLevel } from '../core/log.js';
import type { CheckOptions, CheckResult, Repository, RepoStats } from '../repo/types.js';
import {
  activityLogger,
  activityParams,
  createActivity,
  finishActivity,
  getActivity,
  reapDeadActivities,
  setProgress,
  startHeartbeat,
  waitForTurn,
  type Activity,
} from './activities.js';
import { runBackup, type BackupSummary, type OperationContext } from './backup.js';
import { openCatalog, CATALOG_FILE, type BackupTable, type CatalogDb } from './catalog.js';
import { loadConfig, locateConfig, type EnvironmentConfig, type ProjectConfig } from './config.js';
import { initProjectRepository, openProjectRepository } from './repository.js';
import { planRestore, runRestore, type RestorePlanItem } from './restore.js';

export type Backup = BackupTable;

export interface EnvironmentInfo {
  name: string;
  type: string;
  active: boolean;
  services: string[];
  mounts: string[];
  gateway: string | null;
}

/** How a foreground caller watches an activity it runs itself. */
export interface RunObserver {
  onProgress?(percent: number, message?: string): void;
  onLog?(level: LogLevel, line: string): void;
  onQueued?(ahead: Activity[]): void;
  signal?: AbortSignal;
}

export interface StartOptions extends RunObserver {
  /** false: hand the activity to a detached worker process and return at once. */
  wait: boolean;
}

export interface RestorePreparation {
  backup: Backup;
  source: string;
  target: EnvironmentConfig;
  selection: { only: string[]; paths: Record<string, string[]>; inPlace: boolean };
  plan: RestorePlanItem[];
}

const CLI_ENTRY = fileURLToPath(new URL('../cli/main.js', import.meta.url));

export class Project {
  private db: CatalogDb | undefined;
  /** Opened once per process (the password check costs a KDF run) and reused by its activities. */
  private repo: Repository | undefined;

  private constructor(
    readonly config: ProjectConfig,
    readonly clock: Clock,
  ) {}

  static load(options: { configPath?: string; cwd?: string; clock?: Clock } = {}): Project {
    const file = locateConfig(options.configPath, options.cwd);
    return new Project(loadConfig(file), options.clock ?? systemClock);
  }

  // ---- setup -------------------------------------------------------------------------------------

  /** Creates the state dir, catalog and repository. Returns what was newly created. */
  async init(): Promise<{ catalog: boolean; repository: boolean }> {
    const catalogExisted = existsSync(join(this.config.stateDir, CATALOG_FILE));
    const repository = await initProjectRepository(this.config);
    this.db = await openCatalog(this.config.stateDir, { create: true });
    await this.syncEnvironments();
    return { catalog: !catalogExisted, repository };
  }

  async initRepository(): Promise<boolean> {
    return initProjectRepository(this.config);
  }

  /** The catalog, opened on first use; environments are synced and dead workers reaped on every open. */
  async catalog(): Promise<CatalogDb> {
    if (!this.db) {
      this.db = await openCatalog(this.config.stateDir);
      await this.syncEnvironments();
    }
    await reapDeadActivities(this.db, this.clock);
    return this.db;
  }

  async close(): Promise<void> {
    await this.repo?.close();
    this.repo = undefined;
    await this.db?.destroy();
    this.db = undefined;
  }

  private async syncEnvironments(): Promise<void> {
    const db = this.db!;
    const now = this.clock.now().toISOString();
    for (const env of Object.values(this.config.environments)) {
      await db
        .insertInto('environments')
        .values({ name: env.name, type: env.type, active: 1, created_at: now, updated_at: now })
        .onConflict((oc) => oc.column('name').doUpdateSet({ type: env.type }))
        .execute();
    }
  }

  /** The repository handle; opening it first also refuses a wrong password before anything is queued. */
  async repository(): Promise<Repository> {
    this.repo ??= await openProjectRepository(this.config);
    return this.repo;
  }

  // ---- environments ------------------------------------------------------------------------------

  environment(name: string): EnvironmentConfig {
    const env = this.config.environments[name];
    if (!env) {
      throw new BunkerError('not_found', `environment "${name}" not found in ${this.config.file}`, {
        hint: `Known environments: ${Object.keys(this.config.environments).join(', ')}.`,
      });
    }
    return env;
  }

  /** -e when given; else the only environment; else the single production one. */
  defaultEnvironment(explicit?: string): EnvironmentConfig {
    if (explicit) return this.environment(explicit);
    const envs = Object.values(this.config.environments);
    const production = envs.filter((e) => e.type === 'production');
    const chosen = envs.length === 1 ? envs[0] : production.length === 1 ? production[0] : undefined;
    if (!chosen) {
      throw new BunkerError('usage', 'more than one environment could be meant', {
        hint: `Name one with -e ENV (${envs.map((e) => e.name).join(', ')}).`,
      });
    }
    return chosen;
  }

  async listEnvironments(): Promise<EnvironmentInfo[]> {
    // Before `init` there is no catalog yet, and every environment is active.
    const rows = existsSync(join(this.config.stateDir, CATALOG_FILE))
      ? await (await this.catalog()).selectFrom('environments').selectAll().execute()
      : [];
    return Object.values(this.config.environments).map((env) => ({
      name: env.name,
      type: env.type,
      active: (rows.find((r) => r.name === env.name)?.active ?? 1) === 1,
      services: Object.values(env.services).map((s) => `${s.name} (${s.type})`),
      mounts: Object.keys(env.mounts),
      gateway: env.gateway?.listen ?? null,
    }));
  }

  async setActive(name: string, active: boolean): Promise<boolean> {
    this.environment(name);
    const db = await this.catalog();
    const row = await db.selectFrom('environments').select('active').where('name', '=', name).executeTakeFirst();
    const changed = (row?.active ?? 1) !== (active ? 1 : 0);
    await db
      .updateTable('environments')
      .set({ active: active ? 1 : 0, updated_at: this.clock.now().toISOString() })
      .where('name', '=', name)
      .execute();
    return changed;
  }

  private async assertActive(name: string, doing: string): Promise<void> {
    const db = await this.catalog();
    const row = await db.selectFrom('environments').select('active').where('name', '=', name).executeTakeFirst();
    if (row && row.active !== 1) {
      throw new BunkerError('inactive_environment', `environment ${name} is inactive: cannot ${doing} it`, {
        hint: `Activate it with \`bunker environment:activate ${name}\`.`,
      });
    }
  }

  // ---- backups -----------------------------------------------------------------------------------

  async listBackups(environment: string, options: { includeDeleted?: boolean } = {}): Promise<Backup[]> {
    const db = await this.catalog();
    let q = db.selectFrom('backups').selectAll().where('environment', '=', environment);
    if (!options.includeDeleted) q = q.where('status', '!=', 'deleted');
    return q.orderBy('created_at', 'desc').orderBy('id', 'desc').execute();
  }

  async getBackup(id: string): Promise<Backup> {
    if (!ID_PATTERN.test(id)) {
      throw new BunkerError('not_found', `"${id}" is not a backup id (26 lowercase letters and digits 2-7)`, {
        hint: 'List backups with `bunker backup:list`.',
      });
    }
    const db = await this.catalog();
    const row = await db.selectFrom('backups').selectAll().where('id', '=', id).executeTakeFirst();
    if (!row) throw new BunkerError('not_found', `backup ${id} not found`, { hint: 'List backups with `bunker backup:list`.' });
    return row;
  }

  /** The named backup, or the environment's most recent restorable one. */
  async resolveBackup(id: string | undefined, environment: string): Promise<Backup> {
    if (id) return this.getBackup(id);
    const latest = (await this.listBackups(environment)).find((b) => b.restorable === 1);
    if (!latest) {
      throw new BunkerError('not_found', `environment ${environment} has no restorable backup`, {
        hint: `Create one with \`bunker backup:create ${environment}\`.`,
      });
    }
    return latest;
  }

  async startBackup(environment: string, options: StartOptions & { live: boolean }): Promise<{ activity: Activity; backupId: string }> {
    const env = this.environment(environment);
    await this.assertActive(env.name, 'back up');
    await this.repository();
    const db = await this.catalog();
    const backupId = newId();
    const now = this.clock.now().toISOString();
    await db
      .insertInto('backups')
      .values({
        id: backupId,
        environment: env.name,
        activity_id: null,
        created_at: now,
        updated_at: now,
        expires_at: null,
        status: 'pending',
        safe: options.live ? 0 : 1,
        automated: 0,
        restorable: 0,
        size: 0,
        stored: 0,
        pause_ms: null,
        summary: JSON.stringify({ services: {}, mounts: {} } satisfies BackupSummary),
        snapshot_id: null,
        error: null,
      })
      .execute();
    const activity = await createActivity(db, this.clock, {
      type: 'environment.backup',
      environment: env.name,
      params: { backupId, live: options.live },
      workerPid: options.wait ? process.pid : null,
    });
    await db.updateTable('backups').set({ activity_id: activity.id }).where('id', '=', backupId).execute();
    return { activity: await this.dispatch(activity, options), backupId };
  }

  /** Checks everything a restore needs before anything is queued or touched. */
  async prepareRestore(input: {
    backupId?: string;
    environment: string;
    target?: string;
    services?: string[];
    paths?: Record<string, string[]>;
    inPlace?: boolean;
  }): Promise<RestorePreparation> {
    const backup = await this.resolveBackup(input.backupId, input.environment);
    const target = this.environment(input.target ?? backup.environment);
    if (backup.status === 'deleted') {
      throw new BunkerError('not_restorable', `backup ${backup.id} was deleted on ${backup.updated_at}`, {
        hint: `List the remaining backups with \`bunker backup:list -e ${backup.environment}\`.`,
      });
    }
    if (backup.restorable !== 1 || !backup.snapshot_id) {
      throw new BunkerError('not_restorable', `backup ${backup.id} is not restorable (status ${backup.status}${backup.error ? `: ${backup.error}` : ''})`, {
        hint: 'Pick a backup whose Restorable column says true in `bunker backup:list`.',
      });
    }
    await this.assertActive(target.name, 'restore onto');
    const repo = await this.repository();
    if (!(await repo.hasSnapshot(backup.snapshot_id))) {
      const db = await this.catalog();
      await db.updateTable('backups').set({ restorable: 0, error: 'its snapshot is missing from the repository' }).where('id', '=', backup.id).execute();
      throw new BunkerError('not_restorable', `backup ${backup.id} is not restorable: its snapshot is missing from the repository`, {
        hint: 'Run `bunker repo:check` to see what else is missing.',
      });
    }
    const manifest = await repo.loadSnapshot(backup.snapshot_id);
    const selection = { only: input.services ?? [], paths: input.paths ?? {}, inPlace: input.inPlace === true };
    return { backup, source: backup.environment, target, selection, plan: planRestore(manifest, target, selection) };
  }

  async startRestore(prep: RestorePreparation, options: StartOptions): Promise<Activity> {
    const db = await this.catalog();
    const activity = await createActivity(db, this.clock, {
      type: 'environment.restore',
      environment: prep.target.name,
      params: {
        backupId: prep.backup.id,
        source: prep.source,
        services: prep.plan.map((p) => p.name),
        ...(Object.keys(prep.selection.paths).length ? { paths: prep.selection.paths } : {}),
        ...(prep.selection.inPlace ? { inPlace: true } : {}),
      },
      workerPid: options.wait ? process.pid : null,
    });
    return this.dispatch(activity, options);
  }

  async startDelete(backupId: string, options: StartOptions): Promise<Activity> {
    const backup = await this.getBackup(backupId);
    if (backup.status === 'deleted') {
      throw new BunkerError('not_found', `backup ${backup.id} was already deleted on ${backup.updated_at}`);
    }
    if (backup.status === 'pending' || backup.status === 'in_progress') {
      throw new BunkerError('locked', `backup ${backup.id} is still running`, {
        hint: `Wait for activity ${backup.activity_id} to end (\`bunker activity:log ${backup.activity_id}\`).`,
      });
    }
    await this.repository();
    const db = await this.catalog();
    const activity = await createActivity(db, this.clock, {
      type: 'environment.backup.delete',
      environment: backup.environment,
      params: { backupId: backup.id },
      workerPid: options.wait ? process.pid : null,
    });
    return this.dispatch(activity, options);
  }

  // ---- activities --------------------------------------------------------------------------------

  async getActivity(id: string): Promise<Activity> {
    return getActivity(await this.catalog(), id);
  }

  /** Runs the activity here (waiting for its turn), or hands it to a detached worker. */
  private async dispatch(activity: Activity, options: StartOptions): Promise<Activity> {
    if (options.wait) return this.runActivity(activity.id, options);
    const logDir = join(this.config.stateDir, 'workers');
    mkdirSync(logDir, { recursive: true });
    const out = openSync(join(logDir, `${activity.id}.log`), 'a');
    const child = spawn(process.execPath, [...NODE_FLAGS, CLI_ENTRY, '--config', this.config.file, 'activity:run', activity.id], {
      detached: true,
      stdio: ['ignore', out, out],
      env: { ...process.env, ...launchEnv() },
    });
    child.unref();
    if (child.pid === undefined) throw new BunkerError('internal', 'could not start a worker process');
    const db = await this.catalog();
    await db
      .updateTable('activities')
      .set({ worker_pid: child.pid, worker_host: hostname(), heartbeat_at: this.clock.now().toISOString() })
      .where('id', '=', activity.id)
      .execute();
    return getActivity(db, activity.id);
  }

  /**
   * Waits for the activity's turn, runs it, and records the outcome. Never throws for a failure of the
   * operation itself: that is the activity's result (the caller reads it); throws only if it cannot start.
   */
  async runActivity(id: string, observer: RunObserver = {}): Promise<Activity> {
    const db = await this.catalog();
    let activity = await getActivity(db, id);
    if (activity.state !== 'pending') {
      throw new BunkerError('usage', `activity ${id} is already ${activity.state}`);
    }
    if (activity.worker_pid !== process.pid) {
      await db
        .updateTable('activities')
        .set({ worker_pid: process.pid, worker_host: hostname() })
        .where('id', '=', id)
        .execute();
    }
    const log = activityLogger(db, this.clock, id, observer.onLog);
    const controller = new AbortController();
    const onAbort = () => controller.abort(observer.signal?.reason);
    observer.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      await waitForTurn(db, this.clock, activity, {
        signal: controller.signal,
        ...(observer.onQueued ? { onQueued: observer.onQueued } : {}),
      });
    } catch (err) {
      const error = asBunkerError(err);
      await finishActivity(db, this.clock, id, 'failure', { error: error.message, cancelled: true });
      await this.failBackup(activity, error.message);
      observer.signal?.removeEventListener('abort', onAbort);
      return getActivity(db, id);
    }
    const stopHeartbeat = startHeartbeat(db, this.clock, id);
    const started = Date.now();
    let lastWrite = 0;
    const onProgress = (percent: number, message?: string) => {
      observer.onProgress?.(percent, message);
      if (Date.now() - lastWrite > 500 || percent >= 100) {
        lastWrite = Date.now();
        setProgress(db, this.clock, id, percent).catch(() => {});
      }
    };
    activity = await getActivity(db, id);
    try {
      await this.execute(activity, { log, signal: controller.signal, onProgress });
      log.info(`completed in ${((Date.now() - started) / 1000).toFixed(1)} s`);
      await log.flush();
      await finishActivity(db, this.clock, id, 'success');
    } catch (err) {
      const error = asBunkerError(err);
      log.error(`failed: ${error.message}`);
      if (process.env.BUNKER_DEBUG === '1' && err instanceof Error && err.stack) log.error(err.stack);
      await log.flush();
      await finishActivity(db, this.clock, id, 'failure', { error: error.message, cancelled: isBunkerError(err, 'aborted') });
      await this.failBackup(activity, error.message);
    } finally {
      stopHeartbeat();
      observer.signal?.removeEventListener('abort', onAbort);
    }
    return getActivity(db, id);
  }

  private async failBackup(activity: Activity, error: string): Promise<void> {
    if (activity.type !== 'environment.backup' || !activity.backup_id) return;
    const db = await this.catalog();
    await db
      .updateTable('backups')
      .set({ status: 'failed', restorable: 0, error, updated_at: this.clock.now().toISOString() })
      .where('id', '=', activity.backup_id)
      .execute();
  }

  private async execute(
    activity: Activity,
    run: { log: Logger; signal: AbortSignal; onProgress(percent: number, message?: string): void },
  ): Promise<void> {
    const db = await this.catalog();
    const params = activityParams(activity);
    const repo = await this.repository();
    const ctx: OperationContext = { config: this.config, db, clock: this.clock, repo, ...run };
    switch (activity.type) {
      case 'environment.backup': {
        const env = this.environment(activity.environment);
        await this.assertActive(env.name, 'back up');
        const lastRestore = await db
          .selectFrom('activities')
          .select('result')
          .where('environment', '=', env.name)
          .where('type', '=', 'environment.restore')
          .where('state', '=', 'complete')
          .orderBy('completed_at', 'desc')
          .executeTakeFirst();
        const outcome = await runBackup(ctx, {
          backupId: params.backupId!,
          environment: env,
          live: params.live === true,
          recoverInterruptedRestore: lastRestore?.result === 'failure',
        });
        await db
          .updateTable('backups')
          .set({
            status: 'complete',
            restorable: 1,
            size: outcome.size,
            stored: outcome.stored,
            pause_ms: outcome.pauseMs,
            summary: JSON.stringify(outcome.summary),
            snapshot_id: outcome.snapshotId,
            updated_at: this.clock.now().toISOString(),
          })
          .where('id', '=', params.backupId!)
          .execute();
        run.log.info(`Saved backup ${params.backupId} (snapshot ${outcome.snapshotId.slice(0, 12)}, ${outcome.size} bytes, ${outcome.stored} new bytes stored)`);
        break;
      }
      case 'environment.restore': {
        const backup = await this.getBackup(params.backupId!);
        if (backup.restorable !== 1 || !backup.snapshot_id) {
          throw new BunkerError('not_restorable', `backup ${backup.id} is not restorable (status ${backup.status})`);
        }
        const target = this.environment(activity.environment);
        await this.assertActive(target.name, 'restore onto');
        const manifest = await repo.loadSnapshot(backup.snapshot_id);
        const plan = planRestore(manifest, target, { only: params.services ?? [], paths: params.paths ?? {}, inPlace: params.inPlace === true });
        run.log.info(`Restoring backup ${backup.id} of ${backup.environment} (created ${backup.created_at}) onto ${target.name}`);
        await runRestore(ctx, { target, plan });
        break;
      }
      case 'environment.backup.delete': {
        const backup = await this.getBackup(params.backupId!);
        if (backup.snapshot_id && (await repo.hasSnapshot(backup.snapshot_id))) await repo.forgetSnapshot(backup.snapshot_id);
        await db
          .updateTable('backups')
          .set({ status: 'deleted', restorable: 0, updated_at: this.clock.now().toISOString() })
          .where('id', '=', backup.id)
          .execute();
        run.log.info(`Deleted backup ${backup.id}; its unshared data is freed by the next prune`);
        break;
      }
    }
  }

  // ---- repository --------------------------------------------------------------------------------

  async checkRepository(options: CheckOptions): Promise<CheckResult> {
    return (await this.repository()).check(options);
  }

  async repositoryStats(): Promise<RepoStats> {
    return (await this.repository()).repoStats();
  }
}

export function backupSummary(backup: Backup): BackupSummary {
  return JSON.parse(backup.summary) as BackupSummary;
}
