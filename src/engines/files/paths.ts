// Raw-byte path helpers for the files engine: names are Buffers end to end so that non-UTF-8 names
// survive, plus the checks that keep a restore inside its mount, and exclude patterns.
import { BunkerError } from '../../core/errors.js';

const SLASH = Buffer.from('/');

export function joinPath(dir: Buffer, name: Buffer): Buffer {
  return Buffer.concat([dir, SLASH, name]);
}

/** A path for messages: UTF-8 where valid, other bytes as \xNN. */
export function showPath(path: Buffer | string): string {
  if (typeof path === 'string') return JSON.stringify(path);
  let out = '';
  const text = path.toString('utf8');
  if (Buffer.from(text, 'utf8').equals(path)) out = text;
  else for (const b of path) out += b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, '0')}`;
  return JSON.stringify(out);
}

function unsafe(message: string, path: string): BunkerError {
  return new BunkerError('unsafe_path', message, {
    details: { path },
    hint: 'The snapshot holds a crafted or damaged entry; nothing was written outside the mount. Restore another backup or restore a subset that avoids this entry.',
  });
}

/** Refuses tree entry names that could leave their directory: empty, ".", "..", or holding "/" or NUL. */
export function checkEntryName(name: Buffer, where: string): void {
  if (name.length === 0 || name.includes(0) || name.includes(0x2f) || (name.length <= 2 && /^\.\.?$/.test(name.toString('latin1')))) {
    const shown = where ? `${where}/${showPath(name).slice(1, -1)}` : showPath(name).slice(1, -1);
    throw unsafe(`refusing snapshot entry "${shown}": names must be one path component, not empty, ".", ".." or holding "/"`, shown);
  }
}

/** Splits a relative path given for a subset restore into components, refusing absolute paths and "..". */
export function splitRelative(path: string): Buffer[] {
  if (path.startsWith('/')) throw unsafe(`refusing restore path "${path}": it must be relative to the mount`, path);
  const parts = path.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.some((p) => p === '..')) throw unsafe(`refusing restore path "${path}": ".." is not allowed`, path);
  if (parts.length === 0) throw unsafe(`refusing restore path "${path}": it names no entry inside the mount`, path);
  return parts.map((p) => Buffer.from(p, 'utf8'));
}

/** Map key for a raw name (latin1 maps every byte to one char, so it is a bijection). */
export function nameKey(name: Buffer): string {
  return name.toString('latin1');
}

/**
 * Exclude patterns, gitignore-like: "*" and "?" match within one component, "**" across components;
 * a pattern without "/" matches the name at any depth; a leading "/" anchors it at the mount root.
 */
export function compileExcludes(patterns: readonly string[]): (relPath: string) => boolean {
  if (patterns.length === 0) return () => false;
  const regexes = patterns.map((raw) => {
    let p = raw.replace(/\/+$/, '');
    const anchored = p.startsWith('/') || p.includes('/');
    p = p.replace(/^\/+/, '');
    let re = '';
    for (let i = 0; i < p.length; i++) {
      const c = p[i]!;
      if (c === '*' && p[i + 1] === '*') {
        re += '.*';
        i++;
        if (p[i + 1] === '/') i++;
      } else if (c === '*') re += '[^/]*';
      else if (c === '?') re += '[^/]';
      else re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
    }
    return new RegExp(anchored ? `^${re}(/.*)?$` : `(^|/)${re}(/.*)?$`);
  });
  return (relPath) => regexes.some((r) => r.test(relPath));
}

/** Runs at most `limit` tasks at once. */
export function limiter(limit: number): <T>(task: () => Promise<T>) => Promise<T> {
  let active = 0;
  const queue: Array<() => void> = [];
  return async <T>(task: () => Promise<T>): Promise<T> => {
    if (active >= limit) await new Promise<void>((resolve) => queue.push(resolve));
    active++;
    try {
      return await task();
    } finally {
      active--;
      queue.shift()?.();
    }
  };
}

/** Runs fn over items with at most `limit` in flight; rejects with the first error after all settle. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  let failure: { err: unknown } | undefined;
  const worker = async () => {
    while (next < items.length && !failure) {
      const i = next++;
      try {
        results[i] = await fn(items[i]!, i);
      } catch (err) {
        failure ??= { err };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failure) throw failure.err;
  return results;
}
