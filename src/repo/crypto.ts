// Authenticated encryption and key derivation. Every stored object (blob, pack header, index, snapshot,
// config) is sealed as nonce(12) ‖ AES-256-GCM ciphertext ‖ tag(16) with a random nonce.
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { BunkerError } from '../core/index.js';
import { codecAddon } from './native-codec.js';

export const NONCE_BYTES = 12;
export const TAG_BYTES = 16;
export const SEAL_OVERHEAD = NONCE_BYTES + TAG_BYTES;

/** The per-repository secrets every key slot wraps. */
export interface MasterKeys {
  /** AES-256-GCM key for every object. */
  encKey: Buffer;
  /** HMAC-SHA-256 key for blob ids: ids reveal nothing about content without it. */
  idKey: Buffer;
  /** Seeds the chunker's gear table, so chunk boundaries don't leak content either. */
  chunkerKey: Buffer;
}

export function newMasterKeys(): MasterKeys {
  return { encKey: randomBytes(32), idKey: randomBytes(32), chunkerKey: randomBytes(32) };
}

export function encodeMasterKeys(k: MasterKeys): Buffer {
  return Buffer.concat([k.encKey, k.idKey, k.chunkerKey]);
}

export function decodeMasterKeys(b: Buffer): MasterKeys {
  if (b.length !== 96) throw new BunkerError('corrupt', 'key material has the wrong length');
  return { encKey: b.subarray(0, 32), idKey: b.subarray(32, 64), chunkerKey: b.subarray(64, 96) };
}

export function seal(key: Buffer, plaintext: Uint8Array): Buffer {
  const nonce = randomBytes(NONCE_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key, nonce);
  const body = cipher.update(plaintext);
  cipher.final();
  return Buffer.concat([nonce, body, cipher.getAuthTag()]);
}

/** Decrypts and authenticates; returns null when the tag does not match (tampered, truncated or wrong key). */
export function tryOpen(key: Buffer, sealed: Uint8Array): Buffer | null {
  if (sealed.length < SEAL_OVERHEAD) return null;
  const buf = Buffer.from(sealed.buffer, sealed.byteOffset, sealed.byteLength);
  const decipher = createDecipheriv('aes-256-gcm', key, buf.subarray(0, NONCE_BYTES));
  decipher.setAuthTag(buf.subarray(buf.length - TAG_BYTES));
  const body = decipher.update(buf.subarray(NONCE_BYTES, buf.length - TAG_BYTES));
  try {
    decipher.final();
  } catch {
    return null;
  }
  return body;
}

/** Like tryOpen, but a failure is a `corrupt` error naming the object. */
export function open(key: Buffer, sealed: Uint8Array, what: string): Buffer {
  const out = tryOpen(key, sealed);
  if (!out) throw corrupt(`${what} failed authentication (damaged or modified)`, what);
  return out;
}

export function corrupt(message: string, object: string): BunkerError {
  return new BunkerError('corrupt', message, {
    hint: 'Run `bunker repo:check --read-data` to list every damaged object; restore from another copy of the repository if you have one.',
    details: { object },
  });
}

export interface ScryptParams {
  N: number;
  r: number;
  p: number;
}

/**
 * What an attacker pays per guessed password: 2^17 · 8 block mixes (0.25 s of a current core), in
 * two independent lanes of 64 MiB each (kopia's per-lane memory; restic's is 32 MiB). The same work
 * as one 128 MiB lane, but the codec runs the lanes on two threads, so unlocking waits half as long.
 */
export const PRODUCTION_SCRYPT: ScryptParams = { N: 1 << 16, r: 8, p: 2 };
/** For tests only (BUNKER_INSECURE_FAST_KDF=1): a few milliseconds. */
export const FAST_SCRYPT: ScryptParams = { N: 1 << 10, r: 8, p: 1 };

/**
 * scrypt on the thread pool, computed by the native codec with SSE2 and a thread per lane (node:crypto's
 * scrypt gives the same bytes, several times slower here; see native/bunker-codec.c).
 */
export function deriveKey(password: string, salt: Buffer, params: ScryptParams): Promise<Buffer> {
  return codecAddon().scrypt(Buffer.from(password.normalize('NFC'), 'utf8'), salt, params.N, params.r, params.p, 32);
}
