// The storage contract every backend (local filesystem, later S3) and wrapper (replicated, retry)
// implements. The repository only ever sees this interface, so backends slot in without changing callers.
import { BunkerError } from '../core/index.js';

export interface ByteRange {
  offset: number;
  length: number;
}

export interface ObjectInfo {
  /** Slash-separated name relative to the backend's root, e.g. `data/ab/ab12…`. */
  name: string;
  size: number;
}

export interface StorageBackend {
  /** Where the objects live, for messages (never contains a secret). */
  readonly location: string;

  /**
   * Stores `body` under `name`. Atomic: a reader sees either the previous state or the whole new body,
   * never a prefix, even after a crash. Durable once the promise resolves. Overwrites an existing object
   * (the repository names objects by content hash or random id, so an overwrite carries the same bytes).
   * `body` may be given in parts (a pack's blobs), stored concatenated, so callers need not copy them.
   */
  put(name: string, body: Uint8Array | readonly Uint8Array[]): Promise<void>;

  /**
   * The object's bytes, or `range.length` bytes from `range.offset`. Read-after-write: an object whose
   * put() resolved is visible to every later get(). A missing object rejects with a BunkerError
   * (code `storage`) for which isNotFound() is true; a range beyond the end rejects with code `corrupt`.
   * The Buffer is the caller's alone, never a cached or shared one: the repository decrypts blobs over it.
   */
  get(name: string, range?: ByteRange): Promise<Buffer>;

  /** The object's size, or `null` when it does not exist. */
  stat(name: string): Promise<ObjectInfo | null>;

  /** Every complete object whose name starts with `prefix`, in no particular order. Never temp files. */
  list(prefix: string): Promise<ObjectInfo[]>;

  /** Removes the object. Idempotent: resolves too when it did not exist. */
  delete(name: string): Promise<void>;
}

export function notFoundError(location: string, name: string): BunkerError {
  return new BunkerError('storage', `object ${name} not found in ${location}`, {
    details: { notFound: true, name },
  });
}

/** True for the error get() rejects with when the object does not exist. */
export function isNotFound(err: unknown): boolean {
  return err instanceof BunkerError && err.details?.notFound === true;
}

const NAME = /^[A-Za-z0-9_-][A-Za-z0-9._-]*(\/[A-Za-z0-9_-][A-Za-z0-9._-]*)*$/;

/** Object names are relative slash paths of plain segments: no `..`, no leading dot, no empty segment. */
export function assertObjectName(name: string): void {
  if (!NAME.test(name)) throw new BunkerError('internal', `invalid storage object name: ${JSON.stringify(name)}`);
}
