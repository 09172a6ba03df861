// Opening the project's repository: where the password comes from, and which storage it lives on.
import { readFileSync } from 'node:fs';
import { BunkerError, isBunkerError } from '../core/errors.js';
import { registerSecret } from '../core/redact.js';
import { initRepository, openRepository } from '../repo/index.js';
import type { Repository } from '../repo/types.js';
import { openStorage } from '../storage/index.js';
import type { ProjectConfig } from './config.js';

/**
 * The repository password: BUNKER_PASSWORD, else the file named by BUNKER_PASSWORD_FILE, else the
 * config's storage.password_file. Registered as a secret so it is masked wherever it might appear.
 */
export function readPassword(config: ProjectConfig, env: NodeJS.ProcessEnv = process.env): string {
  let password: string | undefined;
  if (env.BUNKER_PASSWORD) password = env.BUNKER_PASSWORD;
  else {
    const file = env.BUNKER_PASSWORD_FILE || config.storage.passwordFile;
    if (file) {
      try {
        password = readFileSync(file, 'utf8').replace(/\r?\n$/, '');
      } catch (err) {
        throw new BunkerError('password_missing', `cannot read the password file ${file}: ${(err as Error).message}`, {
          hint: 'Check BUNKER_PASSWORD_FILE or storage.password_file in bunker.yaml.',
          cause: err,
        });
      }
    }
  }
  if (!password) {
    throw new BunkerError('password_missing', 'no repository password was given', {
      hint: 'Set BUNKER_PASSWORD, or BUNKER_PASSWORD_FILE, or storage.password_file in bunker.yaml.',
    });
  }
  registerSecret(password);
  return password;
}

export async function openProjectRepository(config: ProjectConfig): Promise<Repository> {
  const password = readPassword(config);
  const storage = openStorage(config.storage.locations, config.dir);
  try {
    return await openRepository({ storage, password });
  } catch (err) {
    if (isBunkerError(err, 'repo_not_found') && !err.hint) {
      throw new BunkerError('repo_not_found', err.message, { hint: 'Run `bunker init` first.', cause: err });
    }
    throw err;
  }
}

/** Creates the repository; returns false when one already exists there (and the password opens it). */
export async function initProjectRepository(config: ProjectConfig): Promise<boolean> {
  const password = readPassword(config);
  const storage = openStorage(config.storage.locations, config.dir);
  const kdf = process.env.BUNKER_INSECURE_FAST_KDF === '1' ? ('fast' as const) : undefined;
  try {
    const repo = await initRepository({ storage, password, ...(kdf ? { kdf } : {}) });
    await repo.close();
    return true;
  } catch (err) {
    if (!isBunkerError(err, 'repo_exists')) throw err;
  }
  // Already there: prove the password opens it, so `init` never hides a wrong password.
  const repo = await openRepository({ storage, password });
  await repo.close();
  return false;
}
