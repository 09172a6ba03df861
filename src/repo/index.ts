// repo: the repository — chunking, keyed ids, compression and encryption, packs, index, snapshots and
// check — behind the contract in types.ts. Open or create one with openRepository / initRepository.
import { BunkerError, newId } from '../core/index.js';
import type { StorageBackend } from '../storage/index.js';
import { DEFAULT_CHUNK_SIZES, validateChunkSizes, type ChunkSizes } from './chunker.js';
import { newMasterKeys, seal, tryOpen, type MasterKeys } from './crypto.js';
import { KEYS_PREFIX, assertPassword, unlockKeySlots, writeKeySlot, type KdfStrength } from './key-slots.js';
import { BunkerRepository, CONFIG_NAME, type RepoConfig, type RepositoryOptions } from './repository.js';
import type { Repository } from './types.js';

export type * from './types.js';
export { BunkerRepository, type RepoConfig, type RepositoryOptions } from './repository.js';
export { DEFAULT_CHUNK_SIZES, type ChunkSizes } from './chunker.js';
export type { KdfStrength } from './key-slots.js';

export const DEFAULT_PACK_SIZE = 16 * 1024 * 1024;
export const DEFAULT_COMPRESSION_LEVEL = 3;
/** Format of new repositories (blobs bound to their ids, binary index files); formats 1-3 are still read and written in their own form. */
export const FORMAT_VERSION = 4;

export interface InitOptions extends RepositoryOptions {
  storage: StorageBackend;
  password: string;
  /** 'fast' = cheap scrypt parameters, for tests only (the CLI uses it with BUNKER_INSECURE_FAST_KDF=1). */
  kdf?: KdfStrength;
  /** zstd level 1–19 (default 3); 0 stores everything uncompressed. */
  compressionLevel?: number;
  /** Chunk sizes (tests and benchmarks); fixed for the repository's life. */
  chunkSizes?: ChunkSizes;
  packSize?: number;
}

export interface OpenOptions extends RepositoryOptions {
  storage: StorageBackend;
  password: string;
}

async function exists(storage: StorageBackend): Promise<boolean> {
  return (await storage.stat(CONFIG_NAME)) !== null;
}

/** Creates a new repository in empty storage. Fails with repo_exists when one is already there. */
export async function initRepository(options: InitOptions): Promise<Repository & BunkerRepository> {
  const { storage, password } = options;
  assertPassword(password);
  if (await exists(storage)) {
    throw new BunkerError('repo_exists', `a repository already exists at ${storage.location}`, {
      hint: 'Use it as it is, or choose another location.',
    });
  }
  const level = options.compressionLevel ?? DEFAULT_COMPRESSION_LEVEL;
  if (!Number.isInteger(level) || level < 0 || level > 19) {
    throw new BunkerError('usage', `compression level ${level} is out of range`, { hint: 'Use 0 (none) to 19; 3 is the default.' });
  }
  const chunker = options.chunkSizes ?? DEFAULT_CHUNK_SIZES;
  validateChunkSizes(chunker);
  const config: RepoConfig = {
    version: FORMAT_VERSION,
    id: newId(),
    created: new Date().toISOString(),
    chunker,
    compressionLevel: level,
    packSize: options.packSize ?? DEFAULT_PACK_SIZE,
  };
  const keys = newMasterKeys();
  // The key slot first, the config last: the config's presence is what makes the repository exist.
  await writeKeySlot(storage, password, keys, options.kdf);
  await storage.put(CONFIG_NAME, seal(keys.encKey, Buffer.from(JSON.stringify(config))));
  return new BunkerRepository(storage, keys, config, options);
}

async function unlock(storage: StorageBackend, password: string): Promise<{ keys: MasterKeys; config: RepoConfig; slotId: string; slotCount: number }> {
  assertPassword(password);
  if (!(await exists(storage))) {
    throw new BunkerError('repo_not_found', `no repository at ${storage.location}`, {
      hint: 'Create one with `bunker repo:init`, or check the storage location in bunker.yaml.',
    });
  }
  const sealedConfig = await storage.get(CONFIG_NAME);
  let config: RepoConfig | undefined;
  const unlocked = await unlockKeySlots(storage, password, async (keys) => {
    const plain = tryOpen(keys.encKey, sealedConfig);
    if (!plain) return false;
    config = JSON.parse(plain.toString('utf8')) as RepoConfig;
    return true;
  });
  if (!config || ![1, 2, 3, 4].includes(config.version)) {
    throw new BunkerError('corrupt', `the repository at ${storage.location} has format version ${String(config?.version)}, which this Bunker does not know`, {
      hint: 'It was probably created by a newer Bunker: upgrade Bunker to open it.',
      details: { object: CONFIG_NAME },
    });
  }
  validateChunkSizes(config.chunker);
  return { ...unlocked, config };
}

/** Opens an existing repository: repo_not_found, wrong_password or corrupt when it can't. */
export async function openRepository(options: OpenOptions): Promise<Repository & BunkerRepository> {
  const { keys, config } = await unlock(options.storage, options.password);
  const repo = new BunkerRepository(options.storage, keys, config, options);
  await repo.loadIndex();
  return repo;
}

/** Adds a key slot for `newPassword`; `password` must open the repository. Returns the new slot's id. */
export async function addPassword(options: { storage: StorageBackend; password: string; newPassword: string; kdf?: KdfStrength }): Promise<string> {
  const { keys } = await unlock(options.storage, options.password);
  return writeKeySlot(options.storage, options.newPassword, keys, options.kdf);
}

/** Removes the key slot that `password` opens. Refuses to remove the last one (the data would be lost). */
export async function removePassword(options: { storage: StorageBackend; password: string }): Promise<void> {
  const { slotId, slotCount } = await unlock(options.storage, options.password);
  if (slotCount <= 1) {
    throw new BunkerError('usage', 'this is the repository\'s only password; removing it would make the data unreadable', {
      hint: 'Add another password first.',
    });
  }
  await options.storage.delete(KEYS_PREFIX + slotId);
}

