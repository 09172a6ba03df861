import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { isBunkerError } from '../core/errors.js';
import { locateConfig, parseConfig } from './config.js';

const FILE = '/srv/shop/bunker.yaml';

function configError(text: string): string {
  try {
    parseConfig(text, FILE);
  } catch (err) {
    if (isBunkerError(err, 'config_invalid')) return err.message;
    throw err;
  }
  throw new Error('expected a config_invalid error');
}

describe('parseConfig', () => {
  it('validates services with their engine, defaults mounts to files, resolves paths from the file', () => {
    const config = parseConfig(
      `project: shop
state_dir: state
storage:
  locations: [{ name: local, url: "file:backups" }]
  password_file: secrets/pw
environments:
  main:
    type: production
    services:
      local: { type: sqlite3, path: data/app.sqlite }
    mounts:
      uploads: { path: web/uploads }
    gateway: { listen: "127.0.0.1:8080", upstream: "http://127.0.0.1:3000" }
    hooks: { post_restore: "true" }
  dev: {}
`,
      FILE,
    );
    expect(config.dir).toBe('/srv/shop');
    expect(config.stateDir).toBe('/srv/shop/state');
    expect(config.storage.passwordFile).toBe('/srv/shop/secrets/pw');
    expect(config.environments.main!.services.local).toEqual({ name: 'local', type: 'sqlite', kind: 'service', config: { path: 'data/app.sqlite' } });
    expect(config.environments.main!.mounts.uploads!.type).toBe('files');
    expect(config.environments.main!.gateway!.listen).toBe('127.0.0.1:8080');
    expect(config.environments.dev!.type).toBe('development');
    expect(config.storage.locations).toEqual([{ name: 'local', url: 'file:backups' }]);
  });

  it('names the path of what is wrong', () => {
    expect(configError('project: shop\nenvironments:\n  main:\n    services:\n      db: { type: postgresql, url: 5 }\n')).toMatch(
      /^environments\.main\.services\.db\.url: /,
    );
    expect(configError('project: shop\nenvironments:\n  main:\n    services:\n      db: { type: sqlite }\n')).toMatch(
      /^environments\.main\.services\.db\.path: /,
    );
    expect(configError('project: shop\nenvironments:\n  main:\n    gateway: { listen: "8080", upstream: "http://x" }\n')).toMatch(
      /^environments\.main\.gateway\.listen: expected host:port/,
    );
    expect(configError('project: shop\nenvironments: {}\n')).toMatch(/^environments: declare at least one environment/);
    expect(configError('environments:\n  main: {}\n')).toMatch(/^project: /);
    expect(configError('project: shop\nenvironments:\n  main:\n    services:\n      x: { url: "y" }\n')).toMatch(
      /^environments\.main\.services\.x\.type: missing service type; use one of: .*sqlite/,
    );
    expect(configError('project: shop\nenvironments:\n  main:\n    mounts:\n      m: { type: sqlite, path: a }\n')).toMatch(
      /unknown mount type "sqlite"; known types: files/,
    );
    expect(
      configError('project: shop\nenvironments:\n  main:\n    services:\n      a: { type: sqlite, path: a }\n    mounts:\n      a: { path: b }\n'),
    ).toMatch(/^environments\.main\.mounts\.a: "a" is already a service name/);
  });

  it('names the line and column of malformed YAML', () => {
    expect(configError('project: shop\nenvironments:\n  main: {\n')).toMatch(/^\/srv\/shop\/bunker\.yaml:\d+:\d+: malformed YAML: /);
    expect(configError('project: a\nproject: b\nenvironments: { main: {} }\n')).toMatch(/bunker\.yaml:2:1: malformed YAML: Map keys must be unique/);
  });
});

describe('locateConfig', () => {
  const dir = mkdtempSync(join(tmpdir(), 'bunker-config-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('finds the nearest bunker.yaml above, or the one named by --config / BUNKER_CONFIG', () => {
    writeFileSync(join(dir, 'bunker.yaml'), 'project: a\n');
    mkdirSync(join(dir, 'a', 'b'), { recursive: true });
    expect(locateConfig(undefined, join(dir, 'a', 'b'))).toBe(join(dir, 'bunker.yaml'));
    expect(locateConfig('bunker.yaml', dir)).toBe(join(dir, 'bunker.yaml'));
    expect(locateConfig(join(dir, 'a', '..'), dir)).toBe(join(dir, 'bunker.yaml')); // a folder works too
    expect(() => locateConfig('missing.yaml', dir)).toThrow(/missing\.yaml does not exist/);
  });
});
