import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { NODE_FLAGS } from '../../src/core/node-flags.js';
import { BIN, ensureBuilt } from '../helpers/cli.js';

describe('node flags', () => {
  it('bin/bunker, run as a user runs it, starts node with NODE_FLAGS', () => {
    expect(readFileSync(BIN, 'utf8').split('\n')[0]).toBe(`#!/usr/bin/env -S node ${NODE_FLAGS.join(' ')}`);
    ensureBuilt();
    // A preloaded script reports the node arguments the process really got.
    const dir = mkdtempSync(join(tmpdir(), 'bunker-flags-'));
    try {
      const report = join(dir, 'report.cjs');
      writeFileSync(report, "process.on('exit', () => process.stderr.write('execArgv=' + JSON.stringify(process.execArgv) + '\\n'));\n");
      const r = spawnSync(BIN, ['--version'], { encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: `--require ${report}` } });
      expect(r.status, r.stderr).toBe(0);
      const execArgv = JSON.parse(/execArgv=(.*)/.exec(r.stderr)![1]!) as string[];
      for (const flag of NODE_FLAGS) expect(execArgv).toContain(flag);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
