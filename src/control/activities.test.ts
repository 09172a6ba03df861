import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixedClock } from '../core/clock.js';
import {
  activityLogger,
  createActivity,
  getActivity,
  readLog,
  reapDeadActivities,
  STALE_MS,
  tryClaim,
} from './activities.js';
import { openCatalog, type CatalogDb } from './catalog.js';

describe('the activity queue', () => {
  const dir = mkdtempSync(join(tmpdir(), 'bunker-activities-'));
  const clock = fixedClock('2026-01-01T00:00:00Z');
  let db: CatalogDb;
  beforeAll(async () => {
    db = await openCatalog(dir, { create: true });
  });
  afterAll(async () => {
    await db.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  it('runs one activity per environment at a time, oldest first; other environments run beside it', async () => {
    const first = await createActivity(db, clock, { type: 'environment.backup', environment: 'main', params: {}, workerPid: process.pid });
    clock.advance(1);
    const second = await createActivity(db, clock, { type: 'environment.backup', environment: 'main', params: {}, workerPid: process.pid });
    const other = await createActivity(db, clock, { type: 'environment.backup', environment: 'staging', params: {}, workerPid: process.pid });
    expect(await tryClaim(db, clock, second)).toBe(false); // an older one is pending
    expect(await tryClaim(db, clock, first)).toBe(true);
    expect(await tryClaim(db, clock, first)).toBe(false); // already running
    expect(await tryClaim(db, clock, second)).toBe(false); // one is running
    expect(await tryClaim(db, clock, other)).toBe(true);
    await db.updateTable('activities').set({ state: 'complete', result: 'success' }).where('id', '=', first.id).execute();
    expect(await tryClaim(db, clock, second)).toBe(true);
    expect((await getActivity(db, second.id)).state).toBe('in_progress');
  });

  it('fails activities whose process died or stopped its heartbeat, and their backups', async () => {
    const dead = spawnSync(process.execPath, ['-e', 'console.log(process.pid)']).stdout.toString().trim();
    await db
      .insertInto('backups')
      .values({
        id: 'b'.repeat(26), environment: 'dead', activity_id: null, created_at: '', updated_at: '', expires_at: null,
        status: 'in_progress', safe: 1, automated: 0, restorable: 0, size: 0, stored: 0, pause_ms: null, summary: '{}', snapshot_id: null, error: null,
      })
      .execute();
    const running = await createActivity(db, clock, { type: 'environment.backup', environment: 'dead', params: { backupId: 'b'.repeat(26) }, workerPid: Number(dead) });
    expect(await tryClaim(db, clock, running)).toBe(true);
    const waiting = await createActivity(db, clock, { type: 'environment.restore', environment: 'dead', params: {}, workerPid: Number(dead) });
    const silent = await createActivity(db, clock, { type: 'environment.restore', environment: 'quiet', params: {}, workerPid: process.pid });
    const alive = await createActivity(db, clock, { type: 'environment.restore', environment: 'alive', params: {}, workerPid: process.pid });

    expect(await reapDeadActivities(db, clock)).toBe(2);
    const r = await getActivity(db, running.id);
    expect([r.state, r.result]).toEqual(['complete', 'failure']);
    expect(r.error).toBe(`the worker process (pid ${dead}) died`);
    expect((await getActivity(db, waiting.id)).state).toBe('cancelled');
    expect((await readLog(db, running.id)).map((l) => l.message)).toEqual([`failed: the worker process (pid ${dead}) died`]);
    const backup = await db.selectFrom('backups').selectAll().where('id', '=', 'b'.repeat(26)).executeTakeFirstOrThrow();
    expect([backup.status, backup.restorable]).toEqual(['failed', 0]);

    // A worker on another host is judged by its heartbeat; on this host a live pid is enough.
    await db.updateTable('activities').set({ worker_host: 'elsewhere' }).where('id', '=', silent.id).execute();
    clock.advance(STALE_MS + 1);
    await reapDeadActivities(db, clock);
    expect((await getActivity(db, silent.id)).error).toMatch(/stopped reporting/);
    expect((await getActivity(db, alive.id)).state).toBe('pending');
  });

  it('keeps log lines in order and redacts secrets', async () => {
    const a = await createActivity(db, clock, { type: 'environment.backup', environment: 'logs', params: {}, workerPid: process.pid });
    const log = activityLogger(db, clock, a.id);
    for (let i = 0; i < 20; i++) log.info(`line ${i}`);
    log.warn('connecting to postgresql://app:s3cret-pass@db:5432/shop');
    await log.flush();
    const lines = await readLog(db, a.id);
    expect(lines.slice(0, 20).map((l) => l.message)).toEqual(Array.from({ length: 20 }, (_, i) => `line ${i}`));
    expect(lines[20]!.message).toBe('connecting to postgresql://app:***@db:5432/shop');
    expect((await readLog(db, a.id, 18)).map((l) => l.seq)).toEqual([19, 20, 21]);
  });
});
