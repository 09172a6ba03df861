// Contexts and temp folders shared by the sqlite engine tests.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../../src/core/log.js';
import type { BackupContext, EngineEnv, RestoreContext } from '../../src/engines/engine.js';
import type { RepoReader } from '../../src/repo/types.js';

export function tempDir(prefix: string): { path: string; remove(): void } {
  const path = mkdtempSync(join(tmpdir(), `bunker-${prefix}-`));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

export function engineEnv(configDir: string, stateDir = join(configDir, '.bunker')): EngineEnv {
  return { configDir, stateDir, log: silentLogger };
}

export function backupContext(repo: BackupContext['repo'], mode: 'safe' | 'live' = 'live'): BackupContext {
  return { repo, log: silentLogger, progress: () => {}, signal: new AbortController().signal, mode };
}

export function restoreContext(repo: RepoReader): RestoreContext {
  return { repo, log: silentLogger, progress: () => {}, signal: new AbortController().signal, options: {} };
}
