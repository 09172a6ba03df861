// Shared setup for the files engine tests: an engine on a mount in a temp dir and contexts to drive it.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../../src/core/log.js';
import type { BackupContext, Engine, RestoreContext, RestoreOptions } from '../../src/engines/engine.js';
import { filesEngine } from '../../src/engines/files/index.js';
import type { RepoReader, ServiceArtifact } from '../../src/repo/types.js';

export function tempDir(label: string): string {
  return mkdtempSync(join(tmpdir(), `bunker-files-${label}-`));
}

/** The files engine on `<configDir>/<path>`. */
export function mountEngine(configDir: string, path = 'mount', exclude?: string[]): Engine {
  return filesEngine.create('uploads', { path, exclude }, { configDir, stateDir: join(configDir, '.state'), log: silentLogger });
}

/** mode 'safe' for tests of pin(): a live backup records the mount as its walk found it. */
export function backupCtx(repo: BackupContext['repo'], parent?: ServiceArtifact, mode: BackupContext['mode'] = 'live'): BackupContext {
  return { repo, parent, log: silentLogger, progress: () => {}, signal: new AbortController().signal, mode };
}

export function restoreCtx(repo: RepoReader, options: RestoreOptions = {}): RestoreContext {
  return { repo, log: silentLogger, progress: () => {}, signal: new AbortController().signal, options };
}
