// On a terminal (a pseudo-terminal from util-linux `script`): a progress line while a backup runs, and
// a confirmation question before a restore that only a "y" answers.
import { spawn, spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, CliProject, ensureBuilt, twoEnvironmentConfig } from '../helpers/cli.js';
import { readRows, seed } from './fixture.js';

const hasScript = spawnSync('script', ['--version']).status === 0;

describe.skipIf(!hasScript)('on a terminal', () => {
  const p = new CliProject();

  /** Runs bunker inside a pseudo-terminal, typing `input`; returns everything the terminal showed. */
  const onTty = (args: string[], input = ''): Promise<{ code: number; screen: string }> =>
    new Promise((resolve, reject) => {
      const command = [process.execPath, BIN, ...args].map((a) => `'${a}'`).join(' ');
      const child = spawn('script', ['-qec', command, '/dev/null'], { cwd: p.dir, env: { ...p.env(), TERM: 'xterm' } });
      let screen = '';
      child.stdout.on('data', (d: Buffer) => (screen += d.toString()));
      child.on('error', reject);
      child.on('close', (code) => resolve({ code: code ?? -1, screen }));
      setTimeout(() => child.stdin.end(input), 1500);
    });

  beforeAll(async () => {
    ensureBuilt();
    p.writeConfig(twoEnvironmentConfig());
    seed(p.dir, 'main', 'tty-main', 2000, 20);
    seed(p.dir, 'staging', 'tty-staging', 3, 1);
    await p.ok(['init']);
  });
  afterAll(() => p.cleanup());

  it('shows a progress line while backing up', async () => {
    const r = await onTty(['backup:create', 'main']);
    expect(r.code).toBe(0);
    expect(r.screen).toMatch(/\r\x1b\[K\[[#-]{24}\]\s+\d+%/);
    expect(r.screen).toMatch(/Backup name: [a-z2-7]{26}/);
  });

  it('asks before restoring, and only "y" goes ahead', async () => {
    const no = await onTty(['backup:restore', '-e', 'main', '--target', 'staging'], 'n\n');
    expect(no.screen).toContain('Restore onto staging? [y/N]');
    expect(no.screen).toContain('Nothing restored.');
    expect(no.code).toBe(0);
    expect(readRows(p.dir, 'staging')[0]!.tag).toBe('tty-staging');

    const yes = await onTty(['backup:restore', '-e', 'main', '--target', 'staging'], 'y\n');
    expect(yes.code).toBe(0);
    expect(yes.screen).toContain('Restored backup');
    expect(readRows(p.dir, 'staging')).toHaveLength(2000);
  });

  it('--no-interaction on a terminal still refuses without -y', async () => {
    const r = await onTty(['--no-interaction', 'backup:restore', '-e', 'main', '--target', 'staging']);
    expect(r.code).toBe(1);
    expect(r.screen).toContain('needs confirmation');
  });
});
