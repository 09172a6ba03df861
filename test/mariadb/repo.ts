// The repository the MariaDB tests write to.
import { MemoryRepo } from '../helpers/memory-repo.js';
import type { RepoReader, RepoWriter } from '../../src/repo/types.js';

export interface TestRepo {
  repo: RepoWriter & RepoReader;
  close(): Promise<void>;
}

export async function openRepo(): Promise<TestRepo> {
  return { repo: new MemoryRepo(), close: async () => {} };
}
