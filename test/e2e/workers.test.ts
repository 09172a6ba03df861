// Activities that outlive the command: --no-wait hands them to a detached worker, activity:log follows
// them, two backups of one environment queue, and a worker killed with SIGKILL mid-backup is found
// and failed (its backup never restorable, the repository still checks clean).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CliProject, ensureBuilt, twoEnvironmentConfig, type RunResult } from '../helpers/cli.js';
import { backupName, readRows, readUploads, seed } from './fixture.js';

interface ActivityJson {
  id: string;
  state: string;
  result: string | null;
  error: string | null;
  worker_pid: number | null;
  started_at: string | null;
  completed_at: string | null;
  created_at: string;
  backup_id: string | null;
}

// `slow` is a command service whose dump takes a while: long enough to queue behind and to kill.
const config =
  twoEnvironmentConfig() +
  `  slow:
    type: development
    services:
      dump: { type: command, backup: "sleep $SLOW_SECONDS && echo slow-data", restore: "cat > slow-restored.txt" }
`;

function activityId(r: RunResult): string {
  const id = /Activity ([a-z2-7]{26}) runs in the background/.exec(r.stderr)?.[1];
  if (!id) throw new Error(`no activity id in: ${r.stderr}`);
  return id;
}

describe('background workers and the activity queue', () => {
  const p = new CliProject();
  const activity = async (id: string, env: Record<string, string> = {}) =>
    JSON.parse((await p.ok(['activity:get', id, '--format', 'json'], { env })).stdout) as ActivityJson;

  beforeAll(async () => {
    ensureBuilt();
    p.writeConfig(config);
    seed(p.dir, 'main', 'main-w1', 30, 3);
    seed(p.dir, 'staging', 'staging-w1', 2, 1);
    await p.ok(['init']);
  });
  afterAll(() => p.cleanup());

  it('--no-wait returns at once; activity:log follows the worker to the end', async () => {
    const r = await p.ok(['backup:create', 'main', '-W']);
    const id = backupName(r.stdout);
    const act = activityId(r);
    const log = await p.ok(['activity:log', act]);
    expect(log.stdout).toContain(`Saved backup ${id}`);
    expect(log.stderr).toContain('complete, success');
    const listed = JSON.parse((await p.ok(['backups', 'main', '--format', 'json', '-c', 'id,restorable'])).stdout);
    expect(listed).toEqual([{ id, restorable: true }]);

    const restore = await p.ok(['backup:restore', id, '--target', 'staging', '-y', '--no-wait']);
    const restoreLog = await p.ok(['activity:log', activityId(restore)]);
    expect(restoreLog.stderr).toContain('complete, success');
    expect(readRows(p.dir, 'staging')).toEqual(readRows(p.dir, 'main'));
    expect(readUploads(p.dir, 'staging')).toEqual(readUploads(p.dir, 'main'));
  });

  it('two backups of one environment started at once: the second waits, then runs', async () => {
    const env = { SLOW_SECONDS: '3' };
    const [a, b] = await Promise.all([p.run(['backup:create', 'slow'], { env }), p.run(['backup:create', 'slow'], { env })]);
    expect(a.code, a.stderr).toBe(0);
    expect(b.code, b.stderr).toBe(0);
    expect(backupName(a.stdout)).not.toBe(backupName(b.stdout));
    expect(a.stderr + b.stderr).toMatch(/Waiting for 1 earlier activity on this environment/);
    const list = JSON.parse((await p.ok(['-e', 'slow', 'activity:list', '--format', 'json', '-c', 'id'])).stdout) as { id: string }[];
    const [later, earlier] = await Promise.all(list.slice(0, 2).map((x) => activity(x.id)));
    expect(earlier!.result).toBe('success');
    expect(later!.result).toBe('success');
    // Queued while the first ran, and started only after it ended.
    expect(Date.parse(later!.created_at)).toBeLessThan(Date.parse(earlier!.completed_at!));
    expect(Date.parse(later!.started_at!)).toBeGreaterThanOrEqual(Date.parse(earlier!.completed_at!));
  });

  it('a worker killed with SIGKILL mid-backup: the activity ends failed, nothing restorable, repo:check passes', async () => {
    const env = { SLOW_SECONDS: '20' };
    const r = await p.ok(['backup:create', 'slow', '--no-wait'], { env });
    const id = activityId(r);
    const backup = backupName(r.stdout);
    let current = await activity(id);
    for (let i = 0; i < 100 && current.state !== 'in_progress'; i++) {
      await new Promise((res) => setTimeout(res, 200));
      current = await activity(id);
    }
    expect(current.state).toBe('in_progress');
    await new Promise((res) => setTimeout(res, 1000)); // let the dump command start
    expect(current.worker_pid).toBeGreaterThan(0);
    process.kill(current.worker_pid!, 'SIGKILL');
    await new Promise((res) => setTimeout(res, 300));

    const after = await activity(id);
    expect(after.state).toBe('complete');
    expect(after.result).toBe('failure');
    expect(after.error).toContain(`worker process (pid ${current.worker_pid}) died`);
    const listed = JSON.parse((await p.ok(['backups', 'slow', '--format', 'json', '-c', 'id,status,restorable'])).stdout) as Record<string, unknown>[];
    expect(listed.find((b) => b.id === backup)).toEqual({ id: backup, status: 'failed', restorable: false });
    expect(listed.filter((b) => b.restorable === true)).toHaveLength(2); // only the two queued ones above
    const restore = await p.run(['backup:restore', backup, '-y']);
    expect(restore.code).toBe(1);
    expect(restore.stderr).toContain('is not restorable');
    const log = await p.run(['activity:log', id]);
    expect(log.stdout).toContain('died');
    expect(log.code).toBe(1);
    expect((await p.ok(['repo:check'])).stdout).toContain('No errors were found');
    // The environment is free again.
    const next = await p.ok(['backup:create', 'slow'], { env: { SLOW_SECONDS: '0' } });
    const nextId = backupName(next.stdout);
    // ... and a deletion handed to a worker ends like any other activity.
    const del = await p.ok(['backup:delete', nextId, '-y', '-W']);
    expect((await p.ok(['activity:log', activityId(del)])).stdout).toContain(`Deleted backup ${nextId}`);
    expect((await p.ok(['backup:get', nextId, '-P', 'status'])).stdout.trim()).toBe('deleted');
  });
});
