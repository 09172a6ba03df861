// The CLI's front door: version, help, completion, usage errors, configuration errors, init, the
// password, environments and their activation. Runs the real bin/bunker.
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CliProject, ensureBuilt, ROOT, twoEnvironmentConfig } from '../helpers/cli.js';
import { seed } from './fixture.js';

beforeAll(() => ensureBuilt());

describe('version, help, completion and usage errors', () => {
  const p = new CliProject();
  afterAll(() => p.cleanup());

  it('prints the package version', async () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
    const r = await p.ok(['--version']);
    expect(r.stdout.trim()).toBe(pkg.version);
  });

  it('lists every command in help, and explains one with help COMMAND', async () => {
    const r = await p.ok(['help']);
    for (const cmd of ['init', 'backup:create', 'backup:list', 'backup:get', 'backup:delete', 'backup:restore', 'activity:list', 'activity:log', 'environment:list', 'environment:activate', 'environment:deactivate', 'repo:init', 'repo:check', 'repo:stats', 'gateway', 'quickstart', 'completion']) {
      expect(r.stdout).toContain(cmd);
    }
    expect(r.stdout).not.toContain('activity:run');
    const one = await p.ok(['help', 'backup:restore']);
    expect(one.stdout).toContain('--target');
    expect(one.stdout).toContain('--service');
    const flag = await p.ok(['backup:create', '--help']);
    expect(flag.stdout).toContain('--live');
    expect(flag.stdout).toContain('--no-wait');
  });

  it('exits 2 with error: for an unknown command, option or missing argument', async () => {
    for (const args of [['bogus'], ['backups', '--bogus'], ['activity:log'], ['backup:list', 'a', 'b'], ['help', 'bogus'], ['backups', '--format']]) {
      const r = await p.run(args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr).toMatch(/^error: /m);
      expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
    }
    const suggestion = await p.run(['backup:craete']);
    expect(suggestion.stderr).toContain('backup:create');
  });

  it('prints a bash completion script that bash accepts', async () => {
    const r = await p.ok(['completion', 'bash']);
    expect(r.stdout).toContain('complete -o default -F _bunker bunker');
    expect(r.stdout).toContain('backup:restore');
    expect(r.stdout).toContain('--target');
    const file = p.path('completion.bash');
    writeFileSync(file, r.stdout);
    expect(spawnSync('bash', ['-n', file]).status).toBe(0);
    // Complete "backup:r" as bash would, after the script is loaded.
    const probe = spawnSync('bash', ['-c', `source ${file}; COMP_WORDS=(bunker backup:r); COMP_CWORD=1; COMP_LINE="bunker backup:r"; COMP_POINT=\${#COMP_LINE}; _bunker; printf '%s\\n' "\${COMPREPLY[@]}"`]);
    expect(probe.stdout.toString()).toContain('restore');
    expect((await p.run(['completion', 'fish'])).code).toBe(2);
  });
});

describe('configuration', () => {
  const p = new CliProject();
  afterAll(() => p.cleanup());

  it('says where to start when no bunker.yaml is found', async () => {
    const r = await p.run(['environment:list']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('error: no bunker.yaml in');
    expect(r.stderr).toContain('hint: ');
  });

  it('names the file and line of malformed YAML', async () => {
    p.writeConfig('project: e2e\nenvironments:\n  main:\n    services: [unclosed\n    mounts: {}\n');
    const r = await p.run(['environment:list']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`error: ${p.configPath.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:\\d+:\\d+: malformed YAML`));
  });

  it('names the path of a bad key', async () => {
    p.writeConfig('project: e2e\nenvironments:\n  main:\n    services:\n      db: { type: postgresql, url: 5 }\n');
    const bad = await p.run(['environment:list']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('error: environments.main.services.db.url: ');

    p.writeConfig('project: e2e\nenvironments:\n  main:\n    type: prod\n');
    expect((await p.run(['environment:list'])).stderr).toContain('environments.main.type: ');

    p.writeConfig('project: e2e\nsurprise: 1\nenvironments:\n  main: {}\n');
    expect((await p.run(['environment:list'])).stderr).toContain('surprise: unknown key "surprise"');
  });

  it('lists the known types for an unknown service type', async () => {
    p.writeConfig('project: e2e\nenvironments:\n  main:\n    services:\n      docs: { type: mongodb, url: "mongodb://x" }\n');
    const r = await p.run(['environment:list']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('environments.main.services.docs.type: unknown service type "mongodb"');
    expect(r.stderr).toMatch(/known types: .*postgresql.*sqlite|known types: .*sqlite.*postgresql/);
  });

  it('finds the config via --config, BUNKER_CONFIG and the nearest folder above', async () => {
    p.writeConfig(twoEnvironmentConfig());
    const sub = p.path('deep', 'er');
    mkdirSync(sub, { recursive: true });
    const fromBelow = await p.ok(['environment:list', '--format', 'csv', '--no-header', '-c', 'name'], { cwd: sub });
    expect(fromBelow.stdout).toBe('main\nstaging\n');

    const other = new CliProject();
    try {
      other.writeConfig(twoEnvironmentConfig().replace('  staging:', '  qa:'));
      const viaFlag = await p.ok(['--config', other.configPath, 'environment:list', '--format', 'plain', '--no-header', '-c', 'name']);
      expect(viaFlag.stdout).toBe('main\nqa\n');
      const viaEnv = await p.ok(['environment:list', '--format', 'plain', '--no-header', '-c', 'name'], { env: { BUNKER_CONFIG: other.configPath } });
      expect(viaEnv.stdout).toBe('main\nqa\n');
      const missing = await p.run(['--config', p.path('nope.yaml'), 'environment:list']);
      expect(missing.code).toBe(1);
      expect(missing.stderr).toContain('nope.yaml does not exist');
    } finally {
      other.cleanup();
    }
  });

  it('-p accepts the project name or folder and refuses another project', async () => {
    p.writeConfig(twoEnvironmentConfig());
    await p.ok(['-p', 'e2e', 'environment:list']);
    await p.ok(['-p', p.dir, 'environment:list'], { cwd: ROOT });
    const wrong = await p.run(['-p', 'shop', 'environment:list']);
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toContain('project "shop" not found');
  });
});

describe('init, password and environments', () => {
  const p = new CliProject();
  beforeAll(() => {
    p.writeConfig(twoEnvironmentConfig());
    seed(p.dir, 'main', 'main-1', 10, 2);
    seed(p.dir, 'staging', 'staging-1', 3, 1);
  });
  afterAll(() => p.cleanup());

  it('refuses to start without a password, saying how to give one', async () => {
    const r = await p.run(['init'], { env: { BUNKER_PASSWORD: undefined } });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('error: no repository password was given');
    expect(r.stderr).toContain('BUNKER_PASSWORD');
  });

  it('init creates the catalog and repository, and says so when repeated', async () => {
    const first = await p.ok(['init']);
    expect(first.stderr).toContain('Created the catalog');
    expect(first.stderr).toContain('Created the repository');
    const again = await p.ok(['init']);
    expect(again.stderr).toContain('already initialised');
    const repoAgain = await p.ok(['repo:init']);
    expect(repoAgain.stderr).toContain('already exists');
  });

  it('reads the password from BUNKER_PASSWORD_FILE and storage.password_file', async () => {
    writeFileSync(p.path('pw.txt'), p.password + '\n');
    const viaEnv = await p.run(['backup:create', 'main'], { env: { BUNKER_PASSWORD: undefined, BUNKER_PASSWORD_FILE: p.path('pw.txt') } });
    expect(viaEnv.code).toBe(0);
    p.writeConfig(twoEnvironmentConfig({ top: 'storage:\n  locations:\n    - { name: local, url: "file:.bunker/storage" }\n  password_file: pw.txt\n' }));
    const viaConfig = await p.run(['backup:create', 'main'], { env: { BUNKER_PASSWORD: undefined } });
    expect(viaConfig.code).toBe(0);
    p.writeConfig(twoEnvironmentConfig());
  });

  it('refuses a wrong password without recording anything, and never prints it', async () => {
    const before = await p.ok(['backups', 'main', '--format', 'json']);
    const r = await p.run(['backup:create', 'main'], { env: { BUNKER_PASSWORD: 'not-the-password-xyz' } });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('password does not open the repository');
    expect(r.stderr + r.stdout).not.toContain('not-the-password-xyz');
    const after = await p.ok(['backups', 'main', '--format', 'json']);
    expect(JSON.parse(after.stdout)).toEqual(JSON.parse(before.stdout));
  });

  it('names the known environments for an unknown one', async () => {
    const r = await p.run(['backup:create', 'prod']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('error: environment "prod" not found');
    expect(r.stderr).toContain('main, staging');
    expect((await p.run(['-e', 'prod', 'backups'])).stderr).toContain('environment "prod" not found');
  });

  it('lists environments, and refuses backups and restores on an inactive one', async () => {
    const list = JSON.parse((await p.ok(['environment:list', '--format', 'json'])).stdout) as Record<string, string>[];
    expect(list.map((e) => [e.name, e.type, e.status])).toEqual([
      ['main', 'production', 'active'],
      ['staging', 'staging', 'active'],
    ]);
    expect(list[0]!.services).toBe('app (sqlite)');

    expect((await p.ok(['environment:deactivate', 'staging'])).stderr).toContain('now inactive');
    expect((await p.ok(['environment:deactivate', 'staging'])).stderr).toContain('already inactive');
    const csv = await p.ok(['environment:list', '--format', 'csv', '-c', 'name,status']);
    expect(csv.stdout).toBe('Name,Status\nmain,active\nstaging,inactive\n');

    const backup = await p.run(['backup:create', 'staging']);
    expect(backup.code).toBe(1);
    expect(backup.stderr).toContain('environment staging is inactive');
    expect(backup.stderr).toContain('bunker environment:activate staging');
    const restore = await p.run(['backup:restore', '-e', 'main', '--target', 'staging', '-y']);
    expect(restore.code).toBe(1);
    expect(restore.stderr).toContain('environment:activate staging');

    await p.ok(['environment:activate', 'staging']);
    await p.ok(['backup:create', 'staging']);
  });

  it('-q keeps informational lines off stderr but keeps results', async () => {
    const r = await p.ok(['-q', 'backup:create', 'main']);
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(/^Backup name: [a-z2-7]{26}\n$/);
  });
});
