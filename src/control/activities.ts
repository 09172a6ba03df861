// Activities: the queue of long operations on an environment. One runs per environment at a time;
// the rest wait as `pending` in creation order. Whoever runs or waits for an activity records its pid
// and keeps a heartbeat, so an activity whose process died is found and failed by the next reader.
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { BunkerError } from '../core/errors.js';
import { newId } from '../core/ids.js';
import type { Clock } from '../core/clock.js';
import { createLogger, type Logger, type LogLevel } from '../core/log.js';
import { redact } from '../core/redact.js';
import type { ActivityResult, ActivityTable, ActivityType, CatalogDb } from './catalog.js';

export interface ActivityParams {
  backupId?: string;
  live?: boolean;
  /** Restore: the environment the backup came from (the activity's environment is the target). */
  source?: string;
  services?: string[];
  /** Restore: what to restore inside some units (unit name → paths: files in a mount, databases). */
  paths?: Record<string, string[]>;
  /** Restore: mounts are restored in place (changed files only) instead of staged whole. */
  inPlace?: boolean;
}

export type Activity = ActivityTable;

export const HEARTBEAT_MS = 2_000;
/** A heartbeat older than this means the worker is gone even if its pid was reused. */
export const STALE_MS = 60_000;

const HOST = hostname();

export const ACTIVITY_DESCRIPTIONS: Record<ActivityType, string> = {
  'environment.backup': 'Backup',
  'environment.restore': 'Restore',
  'environment.backup.delete': 'Backup deletion',
};

export async function createActivity(
  db: CatalogDb,
  clock: Clock,
  input: { type: ActivityType; environment: string; params: ActivityParams; workerPid: number | null },
): Promise<Activity> {
  const now = clock.now().toISOString();
  const row: Activity = {
    id: newId(),
    type: input.type,
    environment: input.environment,
    state: 'pending',
    result: null,
    progress: 0,
    params: JSON.stringify(input.params),
    backup_id: input.params.backupId ?? null,
    created_at: now,
    started_at: null,
    completed_at: null,
    updated_at: now,
    worker_pid: input.workerPid,
    worker_host: input.workerPid === null ? null : HOST,
    heartbeat_at: now,
    error: null,
  };
  await db.insertInto('activities').values(row).execute();
  return row;
}

export function activityParams(activity: Activity): ActivityParams {
  return JSON.parse(activity.params) as ActivityParams;
}

export async function setWorker(db: CatalogDb, clock: Clock, id: string, pid: number): Promise<void> {
  const now = clock.now().toISOString();
  await db
    .updateTable('activities')
    .set({ worker_pid: pid, worker_host: HOST, heartbeat_at: now, updated_at: now })
    .where('id', '=', id)
    .execute();
}

export async function getActivity(db: CatalogDb, id: string): Promise<Activity> {
  const row = await db.selectFrom('activities').selectAll().where('id', '=', id).executeTakeFirst();
  if (!row) {
    throw new BunkerError('not_found', `activity ${id} not found`, { hint: 'List activities with `bunker activity:list`.' });
  }
  return row;
}

export async function listActivities(
  db: CatalogDb,
  filter: { environment?: string; type?: ActivityType; state?: string; limit?: number },
): Promise<Activity[]> {
  let q = db.selectFrom('activities').selectAll();
  if (filter.environment) q = q.where('environment', '=', filter.environment);
  if (filter.type) q = q.where('type', '=', filter.type);
  if (filter.state) q = q.where('state', '=', filter.state as Activity['state']);
  return q.orderBy('created_at', 'desc').orderBy('id', 'desc').limit(filter.limit ?? 10).execute();
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  // A killed child nobody has reaped yet still answers kill(0): treat zombies as dead.
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return true;
  }
}

/**
 * Fails every pending or running activity whose process is gone (pid dead on this host; for another
 * host or an unknown pid, no heartbeat for STALE_MS), and marks its backup failed and not restorable. Called whenever the catalog is read.
 */
export async function reapDeadActivities(db: CatalogDb, clock: Clock): Promise<number> {
  const live = await db.selectFrom('activities').selectAll().where('state', 'in', ['pending', 'in_progress']).execute();
  const now = clock.now();
  let reaped = 0;
  for (const a of live) {
    let reason: string | undefined;
    if (a.worker_pid !== null && a.worker_host === HOST) {
      // On this host the pid is the truth: a live worker whose event loop is busy misses heartbeats.
      if (!processAlive(a.worker_pid)) reason = `the worker process (pid ${a.worker_pid}) died`;
    } else if (a.heartbeat_at && now.getTime() - Date.parse(a.heartbeat_at) > STALE_MS) {
      reason = `the worker process stopped reporting (last heartbeat ${a.heartbeat_at})`;
    }
    if (!reason) continue;
    const at = now.toISOString();
    const ran = a.state === 'in_progress';
    const updated = await db
      .updateTable('activities')
      .set({ state: ran ? 'complete' : 'cancelled', result: 'failure', error: reason, completed_at: at, updated_at: at })
      .where('id', '=', a.id)
      .where('state', '=', a.state)
      .executeTakeFirst();
    if (Number(updated.numUpdatedRows) === 0) continue;
    reaped++;
    await appendLogLine(db, a.id, at, 'error', `${ran ? 'failed' : 'cancelled'}: ${reason}`);
    if (a.type === 'environment.backup' && a.backup_id) {
      await db
        .updateTable('backups')
        .set({ status: 'failed', restorable: 0, error: reason, updated_at: at })
        .where('id', '=', a.backup_id)
        .where('status', 'in', ['pending', 'in_progress'])
        .execute();
    }
  }
  return reaped;
}

/**
 * Starts the activity if it is the environment's oldest pending one and nothing runs there. One UPDATE
 * statement, so two processes racing for the same environment cannot both win.
 */
export async function tryClaim(db: CatalogDb, clock: Clock, activity: Activity): Promise<boolean> {
  const now = clock.now().toISOString();
  const result = await db
    .updateTable('activities')
    .set({ state: 'in_progress', started_at: now, updated_at: now, heartbeat_at: now })
    .where('id', '=', activity.id)
    .where('state', '=', 'pending')
    .where(({ not, exists, selectFrom, and }) =>
      and([
        not(
          exists(
            selectFrom('activities as running')
              .select('running.id')
              .where('running.environment', '=', activity.environment)
              .where('running.state', '=', 'in_progress'),
          ),
        ),
        not(
          exists(
            selectFrom('activities as earlier')
              .select('earlier.id')
              .where('earlier.environment', '=', activity.environment)
              .where('earlier.state', '=', 'pending')
              .where((inner) =>
                inner.or([
                  inner('earlier.created_at', '<', activity.created_at),
                  inner.and([inner('earlier.created_at', '=', activity.created_at), inner('earlier.id', '<', activity.id)]),
                ]),
              ),
          ),
        ),
      ]),
    )
    .executeTakeFirst();
  return Number(result.numUpdatedRows) === 1;
}

export async function heartbeat(db: CatalogDb, clock: Clock, id: string): Promise<void> {
  const now = clock.now().toISOString();
  await db.updateTable('activities').set({ heartbeat_at: now }).where('id', '=', id).execute();
}

/** Keeps the activity's heartbeat fresh until stopped. */
export function startHeartbeat(db: CatalogDb, clock: Clock, id: string): () => void {
  const timer = setInterval(() => {
    heartbeat(db, clock, id).catch(() => {});
  }, HEARTBEAT_MS);
  timer.unref();
  return () => clearInterval(timer);
}

/** Waits (heartbeating) until the activity may run, then marks it in_progress. */
export async function waitForTurn(
  db: CatalogDb,
  clock: Clock,
  activity: Activity,
  options: { signal?: AbortSignal; onQueued?: (ahead: Activity[]) => void } = {},
): Promise<void> {
  let told = false;
  let lastBeat = 0;
  for (;;) {
    if (await tryClaim(db, clock, activity)) return;
    const current = await getActivity(db, activity.id);
    if (current.state !== 'pending') {
      throw new BunkerError('aborted', `activity ${activity.id} is ${current.state}${current.error ? `: ${current.error}` : ''}`);
    }
    if (!told && options.onQueued) {
      told = true;
      const ahead = await db
        .selectFrom('activities')
        .selectAll()
        .where('environment', '=', activity.environment)
        .where('state', 'in', ['pending', 'in_progress'])
        .where('id', '!=', activity.id)
        .where('created_at', '<=', activity.created_at)
        .execute();
      options.onQueued(ahead);
    }
    if (Date.now() - lastBeat > HEARTBEAT_MS) {
      lastBeat = Date.now();
      await heartbeat(db, clock, activity.id);
      await reapDeadActivities(db, clock);
    }
    if (options.signal?.aborted) throw new BunkerError('aborted', 'cancelled while waiting in the queue');
    await new Promise((r) => setTimeout(r, 150));
  }
}

export async function setProgress(db: CatalogDb, clock: Clock, id: string, percent: number): Promise<void> {
  const now = clock.now().toISOString();
  const progress = Math.max(0, Math.min(100, Math.round(percent)));
  // Only while running: a late write must not turn a finished activity's 100% back into 96%.
  await db
    .updateTable('activities')
    .set({ progress, updated_at: now, heartbeat_at: now })
    .where('id', '=', id)
    .where('state', '=', 'in_progress')
    .execute();
}

export async function finishActivity(
  db: CatalogDb,
  clock: Clock,
  id: string,
  result: ActivityResult,
  options: { error?: string; cancelled?: boolean } = {},
): Promise<void> {
  const now = clock.now().toISOString();
  await db
    .updateTable('activities')
    .set({
      state: options.cancelled ? 'cancelled' : 'complete',
      result,
      error: options.error === undefined ? null : redact(options.error),
      progress: result === 'success' ? 100 : undefined,
      completed_at: now,
      updated_at: now,
    })
    .where('id', '=', id)
    .execute();
}

async function appendLogLine(db: CatalogDb, id: string, at: string, level: string, message: string): Promise<void> {
  // Writers of one activity's log are serialized (one worker), but a reaper may add a final line.
  for (let attempt = 0; attempt < 5; attempt++) {
    const row = await db
      .selectFrom('activity_log')
      .select((eb) => eb.fn.max('seq').as('max'))
      .where('activity_id', '=', id)
      .executeTakeFirst();
    const seq = Number(row?.max ?? 0) + 1;
    try {
      await db.insertInto('activity_log').values({ activity_id: id, seq, at, level, message: redact(message) }).execute();
      return;
    } catch (err) {
      if (attempt === 4) throw err;
    }
  }
}

export interface ActivityLogLine {
  seq: number;
  at: string;
  level: string;
  message: string;
}

export async function readLog(db: CatalogDb, id: string, afterSeq = 0): Promise<ActivityLogLine[]> {
  return db
    .selectFrom('activity_log')
    .select(['seq', 'at', 'level', 'message'])
    .where('activity_id', '=', id)
    .where('seq', '>', afterSeq)
    .orderBy('seq')
    .execute();
}

/**
 * A Logger that appends to the activity's log (redacted) and mirrors each line to `echo`. Writes are
 * queued so lines keep their order; flush() waits for them.
 */
export function activityLogger(
  db: CatalogDb,
  clock: Clock,
  id: string,
  echo?: (level: LogLevel, line: string) => void,
): Logger & { flush(): Promise<void> } {
  let chain: Promise<void> = Promise.resolve();
  const logger = createLogger((level, line) => {
    echo?.(level, line);
    const at = clock.now().toISOString();
    chain = chain.then(() => appendLogLine(db, id, at, level, line)).catch(() => {});
  }, 'info');
  return Object.assign(logger, { flush: () => chain });
}
