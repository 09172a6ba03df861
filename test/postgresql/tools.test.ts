// toolPath (tools.ts): Debian's pg_wrapper on the PATH is replaced by the program it would run (the newest
// installed version that has it, since the engine always sets PGHOST); anything else on the PATH is left alone.
import { chmodSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { toolPath } from '../../src/engines/postgresql/tools.js';

const root = mkdtempSync(join(tmpdir(), 'bunker-pg-tools-'));
const exe = (path: string) => {
  writeFileSync(path, '#!/bin/sh\n');
  chmodSync(path, 0o755);
};

// <root>/common/pg_wrapper, <root>/wrapped/pg_restore -> pg_wrapper, <root>/real/pg_restore a program,
// <root>/lib/{9.6,13,15}/bin: 15 has no pg_restore, 13 and 9.6 have one.
mkdirSync(join(root, 'common'));
exe(join(root, 'common', 'pg_wrapper'));
mkdirSync(join(root, 'wrapped'));
symlinkSync(join(root, 'common', 'pg_wrapper'), join(root, 'wrapped', 'pg_restore'));
mkdirSync(join(root, 'real'));
exe(join(root, 'real', 'pg_restore'));
for (const v of ['9.6', '13', '15']) mkdirSync(join(root, 'lib', v, 'bin'), { recursive: true });
exe(join(root, 'lib', '9.6', 'bin', 'pg_restore'));
exe(join(root, 'lib', '13', 'bin', 'pg_restore'));
exe(join(root, 'lib', '15', 'bin', 'pg_dump'));
const lib = join(root, 'lib');

afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('postgresql tool path', () => {
  it("runs the program pg_wrapper would pick: the newest version that has it", () => {
    const env = { PGHOST: '127.0.0.1', PATH: `${join(root, 'nothing')}:${join(root, 'wrapped')}:${join(root, 'real')}` };
    expect(toolPath('pg_restore', env, lib)).toBe(join(lib, '13', 'bin', 'pg_restore'));
  });

  it('keeps the name when the PATH finds something other than pg_wrapper first, or no version has the program', () => {
    const env = { PGHOST: '127.0.0.1', PATH: `${join(root, 'real')}:${join(root, 'wrapped')}` };
    expect(toolPath('pg_restore', env, lib)).toBe('pg_restore');
    const wrappedOnly = { PGHOST: '127.0.0.1', PATH: join(root, 'wrapped') };
    expect(toolPath('pg_restore', wrappedOnly, join(root, 'no-such-dir'))).toBe('pg_restore');
    expect(toolPath('pg_restore', { PGHOST: 'h', PATH: join(root, 'nothing') }, lib)).toBe('pg_restore');
  });

  it('keeps the name without PGHOST, or with PGCLUSTER (pg_wrapper would then choose a cluster itself)', () => {
    expect(toolPath('pg_restore', { PATH: join(root, 'wrapped') }, lib)).toBe('pg_restore');
    expect(toolPath('pg_restore', { PGHOST: '127.0.0.1', PGCLUSTER: '9.6/main', PATH: join(root, 'wrapped') }, lib)).toBe('pg_restore');
  });
});
