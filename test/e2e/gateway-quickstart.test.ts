// `bunker gateway` in front of a tiny app, a safe backup that holds traffic through it (pause_ms is
// recorded), and `bunker quickstart` end to end on SQLite and files.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CliProject, ensureBuilt, twoEnvironmentConfig } from '../helpers/cli.js';
import { backupName, seed } from './fixture.js';

beforeAll(() => ensureBuilt());

describe('bunker gateway and safe backups through it', () => {
  const p = new CliProject();
  let app: Server;
  let port = 0;
  let gatewayPort = 0;

  beforeAll(async () => {
    app = createServer((req, res) => res.end(`hello from ${req.url}`));
    await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
    port = (app.address() as AddressInfo).port;
    // A free port for the gateway: bind, read, release.
    const probe = createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    gatewayPort = (probe.address() as AddressInfo).port;
    await new Promise((r) => probe.close(r));
    p.writeConfig(
      twoEnvironmentConfig({ main: { keys: `    gateway: { listen: "127.0.0.1:${gatewayPort}", upstream: "http://127.0.0.1:${port}" }\n` } }),
    );
    seed(p.dir, 'main', 'gw', 10, 2);
    await p.ok(['init']);
  });
  afterAll(async () => {
    await new Promise((r) => app.close(r));
    p.cleanup();
  });

  it('without a running gateway, a safe backup says writes were not held', async () => {
    const r = await p.ok(['backup:create', 'main']);
    expect(r.stderr).toContain('no gateway is running for main');
    expect((await p.ok(['backup:get', backupName(r.stdout), '-P', 'pause_ms'])).stdout.trim()).toBe('');
  });

  it('runs until SIGTERM, proxies requests, and holds them for a safe backup', async () => {
    const gateway = p.spawn(['gateway', '-e', 'main']);
    let stderr = '';
    gateway.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((r) => gateway.on('exit', (code) => r(code)));
    try {
      for (let i = 0; i < 150 && !stderr.includes('Gateway for main'); i++) await new Promise((r) => setTimeout(r, 100));
      expect(stderr).toContain(`Gateway for main: 127.0.0.1:${gatewayPort} -> http://127.0.0.1:${port}`);
      const res = await fetch(`http://127.0.0.1:${gatewayPort}/ping`);
      expect(await res.text()).toBe('hello from /ping');

      const r = await p.ok(['backup:create', 'main']);
      expect(r.stderr).toMatch(/traffic held for [\d.]+ ms/);
      const pause = Number((await p.ok(['backup:get', backupName(r.stdout), '-P', 'pause_ms'])).stdout);
      expect(Number.isInteger(pause)).toBe(true);
      expect(pause).toBeLessThan(1000);
    } finally {
      gateway.kill('SIGTERM');
    }
    expect(await exited).toBe(0);
  });

  it('refuses to run the gateway for an environment that declares none', async () => {
    const r = await p.run(['gateway', '-e', 'staging']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('environment staging declares no gateway');
  });
});

describe('bunker quickstart', () => {
  const p = new CliProject('bunker-quickstart-');
  afterAll(() => p.cleanup());

  it('backs up main, restores onto staging and shows they are equal; runs again', async () => {
    const env = { BUNKER_PASSWORD: undefined };
    for (let run = 1; run <= 2; run++) {
      const r = await p.ok(['quickstart', p.path('demo'), '--no-servers'], { env, cwd: p.dir, timeoutMs: 120_000 });
      expect(r.stdout).toMatch(/^Backup name: [a-z2-7]{26}$/m);
      expect(r.stdout).toMatch(/\| app \(sqlite\)\s+\|.*\| yes\s+\|/);
      expect(r.stdout).toMatch(/\| uploads \(files\)\s+\|.*\| yes\s+\|/);
      expect(r.stderr).toContain('staging now holds the same data as main');
    }
    // The sample project works with the plain commands afterwards (password from its password_file).
    const list = await p.ok(['backups', 'main', '--format', 'plain', '--no-header', '-c', 'restorable'], { env, cwd: p.path('demo') });
    expect(list.stdout).toBe('true\ntrue\n');
  });

  it('will not overwrite a bunker.yaml it did not write', async () => {
    p.write('mine/bunker.yaml', 'project: mine\n');
    const r = await p.run(['quickstart', p.path('mine')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('was not written by the quickstart');
  });
});
