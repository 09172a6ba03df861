// The codec worker pool never keeps a process alive: it exits after close(), and even when a caller
// forgot close() once its work is done. Runs the built library (dist/) in a child process.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';

const dist = resolve(import.meta.dirname, '../../dist');

function runChild(closeAtEnd: boolean, dir: string) {
  const code = `
    const { initRepository } = await import(process.env.DIST + '/repo/index.js');
    const { FsBackend } = await import(process.env.DIST + '/storage/index.js');
    const repo = await initRepository({ storage: new FsBackend(process.env.REPO), password: 'pw', kdf: 'fast' });
    const ref = await repo.storeBuffer(Buffer.alloc(3 * 1024 * 1024, 1));
    await repo.flush();
    const back = await repo.readBuffer(ref);
    if (back.length !== ref.size) throw new Error('short read');
    ${closeAtEnd ? 'await repo.close();' : ''}
    console.log('finished');
  `;
  return spawnSync(process.execPath, ['--input-type=module', '-e', code], {
    env: { ...process.env, DIST: pathToFileURL(dist).href, REPO: dir },
    timeout: 60_000,
    encoding: 'utf8',
  });
}

describe('worker pool lifetime', () => {
  it.each([true, false])('the process exits by itself (close() called: %s)', async (closeAtEnd) => {
    expect(existsSync(join(dist, 'repo/index.js')), 'run `npm run build` first').toBe(true);
    const dir = await mkdtemp(join(tmpdir(), 'bunker-exit-'));
    try {
      const r = runChild(closeAtEnd, dir);
      expect(r.error, 'the child did not exit within 60 s').toBeUndefined();
      expect(r.stderr).toBe('');
      expect(r.stdout.trim()).toBe('finished');
      expect(r.status).toBe(0);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
