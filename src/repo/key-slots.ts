// Key slots: the repository's master keys wrapped once per password, each under a key derived from that
// password with scrypt. Adding or removing a password touches only its slot; the data never changes.
// The KDF parameters live in the slot, so opening needs no option and old slots keep working.
import { randomBytes } from 'node:crypto';
import { BunkerError, newId } from '../core/index.js';
import type { StorageBackend } from '../storage/index.js';
import {
  FAST_SCRYPT,
  PRODUCTION_SCRYPT,
  decodeMasterKeys,
  deriveKey,
  encodeMasterKeys,
  seal,
  tryOpen,
  type MasterKeys,
  type ScryptParams,
} from './crypto.js';

export type KdfStrength = 'default' | 'fast';

interface KeySlotFile {
  version: 1;
  created: string;
  kdf: { name: 'scrypt'; N: number; r: number; p: number; salt: string };
  /** base64 of seal(kek, encKey ‖ idKey ‖ chunkerKey). */
  wrapped: string;
}

export const KEYS_PREFIX = 'keys/';

export function assertPassword(password: string | undefined): asserts password is string {
  if (typeof password !== 'string' || password.length === 0) {
    throw new BunkerError('password_missing', 'no repository password was given', {
      hint: 'Set BUNKER_PASSWORD or BUNKER_PASSWORD_FILE.',
    });
  }
}

export function kdfParams(strength: KdfStrength | undefined): ScryptParams {
  return strength === 'fast' ? FAST_SCRYPT : PRODUCTION_SCRYPT;
}

/** Writes a new slot wrapping `master` under `password`; returns the slot id. */
export async function writeKeySlot(storage: StorageBackend, password: string, master: MasterKeys, strength?: KdfStrength): Promise<string> {
  assertPassword(password);
  const params = kdfParams(strength);
  const salt = randomBytes(32);
  const kek = await deriveKey(password, salt, params);
  const slot: KeySlotFile = {
    version: 1,
    created: new Date().toISOString(),
    kdf: { name: 'scrypt', ...params, salt: salt.toString('base64') },
    wrapped: seal(kek, encodeMasterKeys(master)).toString('base64'),
  };
  const id = newId();
  await storage.put(KEYS_PREFIX + id, Buffer.from(JSON.stringify(slot)));
  return id;
}

/**
 * Tries every slot with `password`; `accept` confirms that the unwrapped keys belong to this repository
 * (they open its config). Throws wrong_password when no slot opens.
 */
export async function unlockKeySlots(
  storage: StorageBackend,
  password: string,
  accept: (keys: MasterKeys) => Promise<boolean>,
): Promise<{ keys: MasterKeys; slotId: string; slotCount: number }> {
  assertPassword(password);
  const slots = await storage.list(KEYS_PREFIX);
  if (slots.length === 0) {
    throw new BunkerError('corrupt', `the repository at ${storage.location} has no key slots (keys/ is empty)`, {
      hint: 'Restore the keys/ directory from another copy of the repository.',
      details: { object: 'keys/' },
    });
  }
  const mismatched: string[] = [];
  for (const info of slots) {
    let slot: KeySlotFile;
    try {
      slot = JSON.parse((await storage.get(info.name)).toString('utf8')) as KeySlotFile;
      if (slot.version !== 1 || slot.kdf?.name !== 'scrypt') continue;
    } catch (err) {
      if (err instanceof BunkerError && err.code === 'storage') throw err;
      continue; // a damaged slot does not stop another from opening
    }
    const { N, r, p } = slot.kdf;
    // Parameters a damaged or hostile slot could hold: skipped, as a damaged slot is.
    const sane = [N, r, p].every((n) => Number.isInteger(n) && n > 0) && N >= 2 && (N & (N - 1)) === 0 && 128 * N * r <= 2 ** 30 && r * p <= 64;
    if (!sane) continue;
    const kek = await deriveKey(password, Buffer.from(slot.kdf.salt, 'base64'), { N, r, p });
    const material = tryOpen(kek, Buffer.from(slot.wrapped, 'base64'));
    if (!material || material.length !== 96) continue;
    const keys = decodeMasterKeys(material);
    if (await accept(keys)) return { keys, slotId: info.name.slice(KEYS_PREFIX.length), slotCount: slots.length };
    mismatched.push(info.name);
  }
  if (mismatched.length > 0) {
    // The password was right for a slot, but its keys do not open the config: damage, not a typo.
    throw new BunkerError('corrupt', `the password opens ${mismatched.join(', ')}, but its keys do not open the repository's config (the config is damaged, or the key slot belongs to another repository)`, {
      hint: 'Restore `config` and `keys/` from another copy of the repository.',
      details: { object: 'config' },
    });
  }
  throw new BunkerError('wrong_password', `the password does not open the repository at ${storage.location}`, {
    hint: 'Check BUNKER_PASSWORD / BUNKER_PASSWORD_FILE.',
  });
}
