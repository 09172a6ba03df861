import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { LAUNCH_ENV, NODE_FLAGS, SHEBANG } from '../../src/core/node-flags.js';
import { BIN, ensureBuilt } from '../helpers/cli.js';

describe('node flags', () => {
  it('bin/bunker, run as a user runs it, starts node with LAUNCH_ENV and NODE_FLAGS', () => {
    expect(readFileSync(BIN, 'utf8').split('\n')[0]).toBe(SHEBANG);
    ensureBuilt();
    // A preloaded script reports the node arguments the process really got.
    const dir = mkdtempSync(join(tmpdir(), 'bunker-flags-'));
    try {
      const report = join(dir, 'report.cjs');
      writeFileSync(
        report,
        `const names = ${JSON.stringify(Object.keys(LAUNCH_ENV))};\n` +
          "process.on('exit', () => process.stderr.write('execArgv=' + JSON.stringify(process.execArgv) + '\\nenv=' +" +
          " JSON.stringify(Object.fromEntries(names.map((n) => [n, process.env[n]]))) + '\\n'));\n",
      );
      // Without LAUNCH_ENV in the test's own environment: only the first line can set it.
      const parentEnv = Object.fromEntries(Object.entries(process.env).filter(([name]) => !(name in LAUNCH_ENV)));
      const r = spawnSync(BIN, ['--version'], { encoding: 'utf8', env: { ...parentEnv, NODE_OPTIONS: `--require ${report}` } });
      expect(r.status, r.stderr).toBe(0);
      const execArgv = JSON.parse(/execArgv=(.*)/.exec(r.stderr)![1]!) as string[];
      for (const flag of NODE_FLAGS) expect(execArgv).toContain(flag);
      const env = JSON.parse(/env=(.*)/.exec(r.stderr)![1]!) as Record<string, string>;
      for (const [name, value] of Object.entries(LAUNCH_ENV)) expect(env[name]).toBe(value);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
