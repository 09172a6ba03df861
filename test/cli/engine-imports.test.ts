// Engine modules load without zod: a process that backs up or restores through an engine should not
// pay for the config validator (~95 modules, ~55 ms). Checked on the built modules with a resolve hook
// that makes 'zod' unresolvable.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ensureBuilt, ROOT } from '../helpers/cli.js';

const NO_ZOD_HOOK = `data:text/javascript,${encodeURIComponent(`
import { register } from 'node:module';
register('data:text/javascript,' + encodeURIComponent(
  "export async function resolve(specifier, context, next) {" +
  "  if (specifier === 'zod' || specifier.startsWith('zod/')) throw new Error('zod was imported by ' + context.parentURL);" +
  "  return next(specifier, context);" +
  "}"));
`)}`;

function importWithoutZod(modules: string[]): { status: number | null; stderr: string } {
  const code = modules.map((m) => `await import(${JSON.stringify(join(ROOT, 'dist', m))});`).join('\n');
  return spawnSync(process.execPath, ['--import', NO_ZOD_HOOK, '--input-type=module', '-e', code], { encoding: 'utf8' });
}

describe('engine modules and zod', () => {
  it('every engine loads without zod; the config loader, which validates with it, does not', () => {
    ensureBuilt();
    const engines = ['files', 'postgresql', 'mariadb', 'redis', 'sqlite', 'command'].map((e) => `engines/${e}/index.js`);
    const loaded = importWithoutZod(['engines/engine.js', 'repo/index.js', ...engines]);
    expect(loaded.stderr).toBe('');
    expect(loaded.status).toBe(0);
    // The hook does catch an import of zod.
    const config = importWithoutZod(['control/config.js']);
    expect(config.status).not.toBe(0);
    expect(config.stderr).toMatch(/zod was imported by .*config\.js/);
  }, 60_000);
});
