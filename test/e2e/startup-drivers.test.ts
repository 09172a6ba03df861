// Every CLI command reads the config, which loads the engine registry. The PostgreSQL and MariaDB
// drivers load only when the engine first connects (a tenth of a second each of every
// command's start-up otherwise); this checks that in a fresh process against the built CLI.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { ensureBuilt, ROOT } from '../helpers/cli.js';

beforeAll(() => ensureBuilt());

// Module hooks (they run on a loader thread) that report every resolved file back to the main thread.
const HOOKS = `
  let port;
  export function initialize(data) { port = data.port; }
  export async function resolve(specifier, context, next) {
    const result = await next(specifier, context);
    port.postMessage(result.url);
    return result;
  }`;

/** The npm packages a fresh node process has loaded, through import or require, after running `script`. */
function packagesLoadedBy(script: string): string[] {
  const probe = `
    import { register } from 'node:module';
    import { MessageChannel } from 'node:worker_threads';
    const { port1, port2 } = new MessageChannel();
    const urls = [];
    port1.on('message', (url) => urls.push(url));
    port1.unref();
    register('data:text/javascript,' + encodeURIComponent(${JSON.stringify(HOOKS)}), { data: { port: port2 }, transferList: [port2] });
    ${script}
    await new Promise((r) => setTimeout(r, 100)); // the loader thread's last messages
    const loaded = urls.map((url) => /node_modules\\/((?:@[^/]+\\/)?[^/]+)\\//.exec(url)?.[1]).filter(Boolean);
    process.stdout.write(JSON.stringify([...new Set(loaded)]));`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', probe], { cwd: ROOT, encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as string[];
}

describe('CLI start-up', () => {
  const dist = (path: string) => pathToFileURL(join(ROOT, 'dist', path)).href;

  it('loads no PostgreSQL or MariaDB driver to read a config naming both', () => {
    const loaded = packagesLoadedBy(`
      const { getEngine } = await import('${dist('engines/registry.js')}');
      getEngine('postgresql').create('db', { url: 'postgresql://u@localhost/app' }, { configDir: '/tmp', stateDir: '/tmp', log: console });
      getEngine('mariadb').create('db', { url: 'mysql://u@localhost/app' }, { configDir: '/tmp', stateDir: '/tmp', log: console });`);
    expect(loaded).toContain('better-sqlite3'); // the probe itself works: a dependency the registry loads is seen
    expect(loaded).not.toContain('zod'); // engines build their schemas with the config loader's zod
    expect(loaded).not.toContain('pg');
    expect(loaded).not.toContain('mysql2');
  });

  it('loads them when the engine first connects (a probe of the real servers)', () => {
    const loaded = packagesLoadedBy(`
      const { getEngine } = await import('${dist('engines/registry.js')}');
      const env = { configDir: '/tmp', stateDir: '/tmp', log: console };
      const pg = await getEngine('postgresql').create('db', { url: 'postgresql://postgres@127.0.0.1:5432/postgres' }, env).probe();
      const maria = await getEngine('mariadb').create('db', { url: 'mysql://root@127.0.0.1:3306/mysql' }, env).probe();
      if (!pg.version.startsWith('PostgreSQL') || !/^(MariaDB|MySQL)/.test(maria.version)) throw new Error('unexpected probe result');`);
    expect(loaded).toContain('pg');
    expect(loaded).toContain('mysql2');
  });
});
