// Several locations holding the same objects. A put succeeds once `writeQuorum` locations stored it
// (the rest are reported, not hidden); reads go to the first location that has the object, falling
// back to the next on a miss or an error, so one lost or unreachable location does not stop a restore.
// Authenticity is checked above this layer (every object is sealed), so a damaged copy surfaces as a
// `corrupt` error from the repository rather than being silently swapped here.
import { BunkerError } from '../core/index.js';
import { isNotFound, notFoundError, type ByteRange, type ObjectInfo, type StorageBackend } from './backend.js';

export class ReplicatedBackend implements StorageBackend {
  readonly location: string;

  constructor(
    private readonly replicas: readonly StorageBackend[],
    private readonly writeQuorum = Math.floor(replicas.length / 2) + 1,
  ) {
    if (replicas.length === 0 || writeQuorum < 1 || writeQuorum > replicas.length) {
      throw new BunkerError('config_invalid', `write quorum ${writeQuorum} is impossible with ${replicas.length} locations`);
    }
    this.location = replicas.map((r) => r.location).join(' + ');
  }

  async put(name: string, body: Uint8Array | readonly Uint8Array[]): Promise<void> {
    const results = await Promise.allSettled(this.replicas.map((r) => r.put(name, body)));
    const failed = results.flatMap((r, i) => (r.status === 'rejected' ? [`${this.replicas[i]!.location}: ${(r.reason as Error)?.message ?? r.reason}`] : []));
    if (results.length - failed.length < this.writeQuorum) {
      throw new BunkerError('storage', `writing ${name} reached ${results.length - failed.length} of ${this.writeQuorum} required locations (${failed.join('; ')})`, {
        hint: 'Check that the storage locations are reachable and have free space.',
      });
    }
  }

  async get(name: string, range?: ByteRange): Promise<Buffer> {
    let lastError: unknown;
    for (const replica of this.replicas) {
      try {
        return await replica.get(name, range);
      } catch (err) {
        lastError = err;
      }
    }
    if (this.replicas.length > 0 && isNotFound(lastError)) throw notFoundError(this.location, name);
    throw lastError;
  }

  async stat(name: string): Promise<ObjectInfo | null> {
    let lastError: unknown;
    let answered = false;
    for (const replica of this.replicas) {
      try {
        const info = await replica.stat(name);
        answered = true;
        if (info) return info;
      } catch (err) {
        lastError = err;
      }
    }
    if (!answered) throw lastError;
    return null;
  }

  /** The union of what the reachable locations hold; fails only when none answers. */
  async list(prefix: string): Promise<ObjectInfo[]> {
    const results = await Promise.allSettled(this.replicas.map((r) => r.list(prefix)));
    const ok = results.filter((r): r is PromiseFulfilledResult<ObjectInfo[]> => r.status === 'fulfilled');
    if (ok.length === 0) throw (results[0] as PromiseRejectedResult).reason;
    const byName = new Map<string, ObjectInfo>();
    for (const r of ok) for (const o of r.value) if (!byName.has(o.name)) byName.set(o.name, o);
    return [...byName.values()];
  }

  async delete(name: string): Promise<void> {
    const results = await Promise.allSettled(this.replicas.map((r) => r.delete(name)));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  }
}
