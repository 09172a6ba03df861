import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { LAUNCH_ENV, NODE_FLAGS, SHEBANG, threadPoolSize } from '../../src/core/node-flags.js';
import { BIN, ensureBuilt } from '../helpers/cli.js';

describe('node flags', () => {
  it('bin/bunker, run as a user runs it, starts node with LAUNCH_ENV, NODE_FLAGS and a pool sized to the machine', () => {
    expect(readFileSync(BIN, 'utf8').split('\n')[0]).toBe(SHEBANG);
    ensureBuilt();
    // A preloaded script reports the node arguments and the launch variables the process really got.
    const dir = mkdtempSync(join(tmpdir(), 'bunker-flags-'));
    const names = [...Object.keys(LAUNCH_ENV), 'UV_THREADPOOL_SIZE'];
    try {
      const report = join(dir, 'report.cjs');
      writeFileSync(
        report,
        `const names = ${JSON.stringify(names)};\n` +
          "process.on('exit', () => process.stderr.write('execArgv=' + JSON.stringify(process.execArgv) + '\\nenv=' +" +
          " JSON.stringify(Object.fromEntries(names.map((n) => [n, process.env[n]]))) + '\\n'));\n",
      );
      // Without the launch variables in the test's own environment: only bin/bunker can set them.
      const parentEnv = Object.fromEntries(Object.entries(process.env).filter(([name]) => !names.includes(name)));
      const run = (extra: Record<string, string>) => {
        const r = spawnSync(BIN, ['--version'], { encoding: 'utf8', env: { ...parentEnv, ...extra, NODE_OPTIONS: `--require ${report}` } });
        expect(r.status, r.stderr).toBe(0);
        return {
          execArgv: JSON.parse(/execArgv=(.*)/.exec(r.stderr)![1]!) as string[],
          env: JSON.parse(/env=(.*)/.exec(r.stderr)![1]!) as Record<string, string>,
        };
      };
      const { execArgv, env } = run({});
      for (const flag of NODE_FLAGS) expect(execArgv).toContain(flag);
      for (const [name, value] of Object.entries(LAUNCH_ENV)) expect(env[name]).toBe(value);
      expect(env.UV_THREADPOOL_SIZE).toBe(String(threadPoolSize()));
      // A pool size the user chose is kept.
      expect(run({ UV_THREADPOOL_SIZE: '7' }).env.UV_THREADPOOL_SIZE).toBe('7');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
