// Backups and restores through the real bin/bunker: create (safe and live), list in every format, get,
// restore onto the same environment, onto another (--target), partially (--service, --path), in place, the refusals
// (missing or different target units, unknown ids, deleted backups, no -y without a terminal), delete,
// activities, repo:check and repo:stats. The tests run in order on one project.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CliProject, ensureBuilt, twoEnvironmentConfig } from '../helpers/cli.js';
import { backupName, readRows, readUploads, seed } from './fixture.js';

const SECRET = 'hunter2-e2e-secret';

// `other` lacks the uploads mount and has an `app` of another type: the refusals need it.
const config = twoEnvironmentConfig({
  staging: { keys: `    hooks:\n      post_restore: "pwd > hook-ran.txt && echo hook says hello"\n` },
}) +
  `  other:
    type: development
    services:
      app: { type: postgresql, url: "postgresql://bunker:${SECRET}@127.0.0.1:5432/e2e_never_used" }
  partial:
    type: development
    services:
      app: { type: sqlite, path: partial/app.sqlite }
`;

describe('backup and restore', () => {
  const p = new CliProject();
  const outputs: string[] = [];
  const run = async (args: string[], options = {}) => {
    const r = await p.run(args, options);
    outputs.push(r.stdout, r.stderr);
    return r;
  };
  const ok = async (args: string[], options = {}) => {
    const r = await p.ok(args, options);
    outputs.push(r.stdout, r.stderr);
    return r;
  };
  let first = '';
  let live = '';

  beforeAll(async () => {
    ensureBuilt();
    p.writeConfig(config);
    seed(p.dir, 'main', 'main-v1', 40, 4);
    seed(p.dir, 'staging', 'staging-v1', 5, 1);
    seed(p.dir, 'partial', 'partial-v1', 2, 0);
    await ok(['init']);
  });
  afterAll(() => p.cleanup());

  it('backup:list says when there are no backups (exit 1)', async () => {
    const r = await run(['backups', 'main']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('No backups found');
    expect(r.stdout).toBe('');
  });

  it('backup:create prints what it backs up and the backup name', async () => {
    const r = await ok(['backup:create', 'main']);
    expect(r.stderr).toContain('Creating a backup of main');
    expect(r.stderr).toContain('application writes were not held');
    expect(r.stderr).not.toMatch(/\r|\x1b\[/); // no progress line without a terminal
    first = backupName(r.stdout);
    seed(p.dir, 'main', 'main-v2', 60, 6);
    const l = await ok(['backup', '-e', 'main', '--live']); // alias, -e, --live
    expect(l.stderr).toContain('Creating a backup of main (live');
    live = backupName(l.stdout);
    expect(live).not.toBe(first);
  });

  it('backup:list shows newest first in every format', async () => {
    const table = await ok(['backups', 'main']);
    expect(table.stderr).toContain('Backups on the project e2e, environment main:');
    const lines = table.stdout.split('\n');
    expect(lines[1]).toMatch(/\| Created\s+\| Backup ID\s+\| Restorable \|/);
    expect(lines[3]).toContain(live);
    expect(lines[4]).toContain(first);

    const csv = await ok(['backup:list', 'main', '--format', 'csv', '-c', 'id,live,status,restorable']);
    expect(csv.stdout).toBe(`Backup ID,Live,Status,Restorable\n${live},true,complete,true\n${first},false,complete,true\n`);
    expect(csv.stderr).not.toContain('Backups on the project');
    const tsv = await ok(['backups', 'main', '--format', 'tsv', '--no-header', '-c', 'id', '-c', 'automated']);
    expect(tsv.stdout).toBe(`${live}\tfalse\n${first}\tfalse\n`);
    const plain = await ok(['backups', 'main', '--format', 'plain', '--date-fmt', 'Y-m-d H:i', '-c', 'created']);
    expect(plain.stdout).toMatch(/^Created\n\d{4}-\d\d-\d\d \d\d:\d\d\n\d{4}-\d\d-\d\d \d\d:\d\d\n$/);
    const json = JSON.parse((await ok(['backups', 'main', '--format', 'json', '-c', 'id,size,expires,live'])).stdout) as Record<string, unknown>[];
    expect(json.map((b) => b.id)).toEqual([live, first]);
    expect(json[0]!.size).toBeGreaterThan(0);
    expect(json[0]!.expires).toBeNull();

    const badFormat = await run(['backups', 'main', '--format', 'xml']);
    expect(badFormat.code).toBe(2);
    expect(badFormat.stderr).toContain('unknown format "xml"');
    const badColumn = await run(['backups', 'main', '-c', 'colour']);
    expect(badColumn.code).toBe(2);
    expect(badColumn.stderr).toContain('Available columns');
  });

  it('backup:get shows a backup, one property of it, as yaml or json', async () => {
    const yaml = await ok(['backup:get', first]);
    expect(yaml.stdout).toContain(`id: ${first}`);
    expect(yaml.stdout).toContain('status: complete');
    const json = JSON.parse((await ok(['backup:get', live, '--format', 'json'])).stdout) as Record<string, any>;
    expect(json.live).toBe(true);
    expect(json.services.app.type).toBe('sqlite');
    expect(json.mounts.uploads.type).toBe('files');
    expect((await ok(['backup:get', first, '-P', 'safe'])).stdout).toBe('true\n');
    const size = Number((await ok(['backup:get', first, '-P', 'mounts.uploads.size'])).stdout);
    expect(size).toBe(4 * 'main-v1 document 0\n'.length);
    expect((await ok(['backup:get', '-e', 'main', '-P', 'id'])).stdout.trim()).toBe(live); // default: most recent
    const bad = await run(['backup:get', first, '-P', 'colour']);
    expect(bad.code).toBe(2);
  });

  it('refuses unknown backup ids', async () => {
    for (const id of ['aaaaaaaaaaaaaaaaaaaaaaaaaa', 'not-an-id']) {
      const r = await run(['backup:restore', id, '-y']);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/error: (backup aaaa+ not found|"not-an-id" is not a backup id)/);
    }
  });

  it('asks for --yes when there is no terminal, and changes nothing', async () => {
    const r = await run(['backup:restore', first]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('This will overwrite, on environment main:');
    expect(r.stderr).toContain('service app (sqlite): path main/app.sqlite');
    expect(r.stderr).toContain('error: this command changes data and needs confirmation');
    expect(r.stderr).toContain('-y');
    const n = await run(['--no-interaction', 'backup:restore', first]);
    expect(n.code).toBe(1);
    expect(readRows(p.dir, 'main')[0]!.tag).toBe('main-v2');
  });

  it('restores a backup onto its own environment', async () => {
    await ok(['backup:restore', first, '-y']);
    const rows = readRows(p.dir, 'main');
    expect(rows).toHaveLength(40);
    expect(rows.every((r) => r.tag === 'main-v1')).toBe(true);
    expect(Object.keys(readUploads(p.dir, 'main'))).toHaveLength(4);
  });

  it('restores onto another environment with --target and runs its post_restore hook there', async () => {
    const before = readRows(p.dir, 'staging');
    expect(before[0]!.tag).toBe('staging-v1');
    const r = await ok(['backup:restore', live, '--target', 'staging', '-y']);
    expect(r.stderr).toContain('This will overwrite, on environment staging:');
    expect(r.stderr).toContain('post_restore hook');
    expect(r.stderr).toContain('hook says hello');
    expect(readRows(p.dir, 'staging')).toHaveLength(60);
    expect(readUploads(p.dir, 'staging')).toEqual({
      ...Object.fromEntries(Array.from({ length: 6 }, (_, i) => [`docs/doc-${i}.txt`, expect.any(String)])),
    });
    // The hook ran in the folder of bunker.yaml.
    expect(readFileSync(p.path('hook-ran.txt'), 'utf8').trim()).toBe(p.dir);
  });

  it('--service restores only the named units', async () => {
    seed(p.dir, 'staging', 'staging-v3', 7, 2);
    await ok(['backup:restore', first, '--target', 'staging', '--service', 'uploads', '-y']);
    expect(readRows(p.dir, 'staging')[0]!.tag).toBe('staging-v3'); // database untouched
    expect(Object.keys(readUploads(p.dir, 'staging'))).toHaveLength(4); // mount restored
    const unknown = await run(['backup:restore', first, '--service', 'cache', '-y']);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('the backup has no service or mount named "cache"');
  });

  it('--path restores only a path inside a mount; --in-place rewrites only the files that differ', async () => {
    seed(p.dir, 'staging', 'staging-v4', 7, 3);
    const before = readUploads(p.dir, 'staging');
    const r = await ok(['backup:restore', first, '--target', 'staging', '--path', 'uploads:docs/doc-1.txt', '-y']);
    expect(r.stderr).toContain('(only docs/doc-1.txt)');
    const after = readUploads(p.dir, 'staging');
    expect(readRows(p.dir, 'staging')[0]!.tag).toBe('staging-v4'); // the database is not named: untouched
    expect(after['docs/doc-1.txt']).not.toBe(before['docs/doc-1.txt']); // main-v1's document 1
    expect({ ...after, 'docs/doc-1.txt': '' }).toEqual({ ...before, 'docs/doc-1.txt': '' }); // nothing else changed

    // In place: the mount ends up equal to the backup; an unchanged file keeps its inode (not rewritten).
    const doc1 = p.path('staging/uploads/docs/doc-1.txt');
    const inode = statSync(doc1).ino;
    const inPlace = await ok(['backup:restore', first, '--target', 'staging', '--service', 'uploads', '--in-place', '-y']);
    expect(inPlace.stderr).toContain(', in place');
    expect(readUploads(p.dir, 'staging')).toEqual(readUploads(p.dir, 'main'));
    expect(statSync(doc1).ino).toBe(inode);

    for (const [arg, message] of [
      ['uploads', 'is not UNIT:PATH'],
      ['nothing:x', '--path names "nothing"'],
      ['uploads:../escape', 'escape'],
    ] as const) {
      const bad = await run(['backup:restore', first, '--target', 'staging', '--path', arg, '-y']);
      expect(bad.code).not.toBe(0);
      expect(bad.stderr).toContain(message);
    }
    expect(readUploads(p.dir, 'staging')).toEqual(readUploads(p.dir, 'main')); // the refusals changed nothing
  });

  it('refuses a target that lacks a unit or whose type differs, before touching anything', async () => {
    const missing = await run(['backup:restore', first, '--target', 'partial', '-y']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('partial has no mount "uploads"');
    expect(readRows(p.dir, 'partial')[0]!.tag).toBe('partial-v1');

    const differs = await run(['backup:restore', first, '--target', 'other', '-y']);
    expect(differs.code).toBe(1);
    expect(differs.stderr).toContain('service "app" is sqlite in the backup but postgresql in other');
    expect(differs.stderr).toContain('--service');

    // Restoring only what the partial target has works.
    await ok(['backup:restore', first, '--target', 'partial', '--service', 'app', '-y']);
    expect(readRows(p.dir, 'partial')[0]!.tag).toBe('main-v1');
  });

  it('activity:list, activity:get and activity:log show what happened', async () => {
    const list = JSON.parse((await ok(['activity:list', '--limit', '50', '--format', 'json', '-c', 'id,type,state,result,environment'])).stdout) as Record<string, string>[];
    expect(list.filter((a) => a.type === 'environment.backup')).toHaveLength(2);
    expect(list.filter((a) => a.type === 'environment.restore').length).toBeGreaterThanOrEqual(4);
    expect(list.every((a) => a.state === 'complete')).toBe(true);
    // Only the restore of `uploads:../escape` failed (the engine refused the path before writing).
    expect(list.filter((a) => a.result !== 'success').map((a) => a.type)).toEqual(['environment.restore']);
    const restores = JSON.parse((await ok(['-e', 'staging', 'activity:list', '--type', 'environment.restore', '--format', 'json'])).stdout) as Record<string, string>[];
    expect(restores.length).toBe(5); // --target (live), --service, --path, --in-place, the refused ../escape
    const id = restores[restores.length - 1]!.id!;
    expect((await ok(['activity:get', id, '-P', 'params.backupId'])).stdout.trim()).toBe(live);
    const log = await ok(['activity:log', id, '-t']);
    expect(log.stdout).toMatch(/^\d{4}-\d\d-\d\dT[\d:.]+Z Restoring backup/m);
    expect(log.stdout).toContain('hook: hook says hello');
    expect(log.stderr).toContain('complete, success');
    expect((await run(['activity:log', 'aaaaaaaaaaaaaaaaaaaaaaaaaa'])).stderr).toContain('activity aaaaaaaaaaaaaaaaaaaaaaaaaa not found');
    expect((await run(['activity:list', '--type', 'nap'])).code).toBe(2);
    const complete = (await ok(['activity:list', '--state', 'complete', '--limit', '2', '--format', 'csv', '--no-header', '-c', 'state'])).stdout;
    expect(complete).toBe('complete\ncomplete\n');
    expect((await run(['activity:list', '--state', 'pending'])).stderr).toContain('No activities found');
    expect((await ok(['activity:log', id, '--no-follow'])).stdout).toBe(log.stdout.replace(/^\S+ /gm, ''));
  });

  it('backup:delete asks, deletes, and a deleted backup cannot be restored', async () => {
    const refused = await run(['backup:delete', first]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('needs confirmation');
    await ok(['backup:delete', first, '-y']);
    const ids = (await ok(['backups', 'main', '--format', 'plain', '--no-header', '-c', 'id'])).stdout.trim().split('\n');
    expect(ids).toEqual([live]);
    expect((await ok(['backup:get', first, '-P', 'status'])).stdout.trim()).toBe('deleted');
    const restore = await run(['backup:restore', first, '-y']);
    expect(restore.code).toBe(1);
    expect(restore.stderr).toContain(`backup ${first} was deleted`);
    const again = await run(['backup:delete', first, '-y']);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('already deleted');
  });

  it('repo:check and repo:stats report on the repository', async () => {
    expect((await ok(['repo:check'])).stdout).toMatch(/^No errors were found \(1 snapshots/);
    expect((await ok(['repo:check', '--read-data'])).stdout).toContain('No errors were found');
    expect((await ok(['repo:check', '--read-data-subset=50%'])).stdout).toContain('No errors were found');
    const bad = await run(['repo:check', '--read-data-subset', '150%']);
    expect(bad.code).toBe(2);
    const stats = JSON.parse((await ok(['repo:stats', '--format', 'json'])).stdout) as Record<string, number>;
    expect(stats.snapshots).toBe(1);
    expect(stats.storedBytes).toBeGreaterThan(0);
    expect((await ok(['repo:stats'])).stdout).toMatch(/snapshots:\s+1/);
  });

  it('never prints a secret, also when a service with a password in its URL fails', async () => {
    const failed = await run(['backup:create', 'other']);
    expect(failed.code).toBe(1);
    expect(failed.stderr).toContain('error: the backup of other failed');
    const id = /activity:log ([a-z2-7]{26})/.exec(failed.stderr)?.[1];
    expect(id).toBeDefined();
    const log = await run(['activity:log', id!]);
    expect(log.code).toBe(1);
    expect(log.stderr).toContain('failure');
    const failedBackups = JSON.parse((await ok(['backups', 'other', '--format', 'json', '-c', 'status,restorable'])).stdout);
    expect(failedBackups).toEqual([{ status: 'failed', restorable: false }]);
    expect(existsSync(p.path('.bunker', 'catalog.sqlite'))).toBe(true);
    const all = outputs.join('\n');
    expect(all).not.toContain(SECRET);
    expect(all).not.toContain(p.password);
    const catalog = readFileSync(p.path('.bunker', 'catalog.sqlite')).toString('latin1');
    expect(catalog).not.toContain(p.password);
  });
});
