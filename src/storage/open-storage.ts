// Builds the storage stack from configured locations. Callers get a StorageBackend and never know
// whether it is one directory, an S3 bucket or a replicated set: new schemes plug in here only.
import { isAbsolute, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BunkerError, redactUrl } from '../core/index.js';
import type { StorageBackend } from './backend.js';
import { FsBackend } from './fs-backend.js';
import { ReplicatedBackend } from './replicated-backend.js';

export interface StorageLocation {
  name: string;
  url: string;
}

/** One backend for one location URL. `file:` paths without `//` are relative to `baseDir`. */
export function openLocation(location: StorageLocation, baseDir: string): StorageBackend {
  const { url } = location;
  if (url.startsWith('file://')) return new FsBackend(fileURLToPath(url));
  if (url.startsWith('file:')) {
    const path = decodeURIComponent(url.slice('file:'.length));
    if (!path) throw invalid(location, 'the path is empty');
    return new FsBackend(isAbsolute(path) ? path : resolve(baseDir, path));
  }
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(url)?.[1];
  throw invalid(location, scheme ? `the scheme "${scheme}:" is not supported yet` : 'it is not a URL');
}

function invalid(location: StorageLocation, why: string): BunkerError {
  return new BunkerError('config_invalid', `storage location "${location.name}" (${redactUrl(location.url)}): ${why}`, {
    hint: 'Use a file: URL such as file:./backups (relative to the project directory) or file:///var/backups/bunker.',
  });
}

/** The storage stack for a repository's locations. */
export function openStorage(locations: StorageLocation[], baseDir: string): StorageBackend {
  const first = locations[0];
  if (!first) throw new BunkerError('config_invalid', 'no storage location is configured', {
    hint: 'Add at least one location, e.g. file:./backups.',
  });
  if (locations.length === 1) return openLocation(first, baseDir);
  // Several locations: writes need a majority, reads use the first location that has the object.
  return new ReplicatedBackend(locations.map((l) => openLocation(l, baseDir)));
}
