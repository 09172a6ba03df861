// A real repository in a temp dir with the fast KDF, for every test that stores or reads data.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initRepository, openRepository } from '../../src/repo/index.js';
import type { Repository } from '../../src/repo/types.js';
import { FsBackend, type StorageBackend } from '../../src/storage/index.js';

export interface TestRepo {
  repo: Repository;
  dir: string;
  password: string;
  storage: StorageBackend;
  /** Opens the same repository again (a second handle, as another process would). */
  reopen(): Promise<Repository>;
  /** Closes every handle and removes the directory. */
  cleanup(): Promise<void>;
}

export async function createTestRepo(options: { compressionLevel?: number; packSize?: number } = {}): Promise<TestRepo> {
  const dir = await mkdtemp(join(tmpdir(), 'bunker-repo-'));
  const password = 'test-password-' + Math.random().toString(36).slice(2);
  const storage = new FsBackend(dir);
  const repo = await initRepository({ storage, password, kdf: 'fast', compressionLevel: options.compressionLevel, packSize: options.packSize });
  const handles: Repository[] = [repo];
  return {
    repo,
    dir,
    password,
    storage,
    async reopen() {
      const again = await openRepository({ storage, password });
      handles.push(again);
      return again;
    },
    async cleanup() {
      await Promise.allSettled(handles.map((h) => h.close()));
      await rm(dir, { recursive: true, force: true });
    },
  };
}
