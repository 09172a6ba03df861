// Metadata-aware snapshot of a directory tree for tests: every entry's type, mode bits, owner,
// mtime (ns), size, content hash, symlink target, user xattrs, device number, hard-link grouping
// and whether a file is sparse. Two trees are equal when their descriptions are.
import { createHash } from 'node:crypto';
import { lstatSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { nativeFs } from '../../src/engines/files/native.js';

export interface EntryFacts {
  type: string;
  mode: string;
  owner: string;
  mtimeNs: string;
  size?: number;
  sha256?: string;
  sparse?: boolean;
  target?: string;
  rdev?: string;
  xattrs?: string;
  /** Hard links: the first path (sorted) sharing this inode. */
  linkedTo?: string;
}

/** Describes a tree; keys are relative paths with names as hex-escaped raw bytes. `withRoot` adds the root dir itself. */
export function describeTree(root: string, options: { withRoot?: boolean } = {}): Map<string, EntryFacts> {
  const out = new Map<string, EntryFacts>();
  const inodes = new Map<string, string>();
  const walk = (abs: Buffer, rel: string) => {
    const names = readdirSync(abs, { encoding: 'buffer' }).sort(Buffer.compare);
    for (const name of names) {
      const path = Buffer.concat([abs, Buffer.from('/'), name]);
      const key = rel + '/' + escapeName(name);
      out.set(key, describe(path, key, inodes));
      if (lstatSync(path).isDirectory()) walk(path, key);
    }
  };
  const rootBuf = Buffer.from(root);
  if (options.withRoot) out.set('.', describe(rootBuf, '.', inodes));
  walk(rootBuf, '');
  return out;
}

function escapeName(name: Buffer): string {
  let s = '';
  for (const b of name) s += b > 0x20 && b < 0x7f && b !== 0x25 && b !== 0x2f ? String.fromCharCode(b) : `%${b.toString(16).padStart(2, '0')}`;
  return s;
}

function describe(path: Buffer, key: string, inodes: Map<string, string>): EntryFacts {
  const st = lstatSync(path, { bigint: true });
  const facts: EntryFacts = {
    type: st.isFile() ? 'file' : st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : st.isFIFO() ? 'fifo' : st.isCharacterDevice() ? 'chardev' : st.isBlockDevice() ? 'blockdev' : 'other',
    mode: (st.mode & 0o7777n).toString(8),
    owner: `${st.uid}:${st.gid}`,
    mtimeNs: st.mtimeNs.toString(),
  };
  if (facts.type === 'symlink') {
    facts.target = readlinkSync(path, { encoding: 'buffer' }).toString('hex');
    delete (facts as { mode?: string }).mode; // a symlink's mode is not settable on Linux
    return facts;
  }
  const xattrs = nativeFs().userXattrs(path);
  if (xattrs.length) facts.xattrs = xattrs.map(([n, v]) => `${n.toString()}=${v.toString('hex')}`).sort().join(',');
  if (facts.type === 'file') {
    facts.size = Number(st.size);
    facts.sha256 = createHash('sha256').update(readFileSync(path)).digest('hex');
    facts.sparse = st.blocks * 512n < st.size;
    if (st.nlink > 1n) {
      const inode = `${st.dev}:${st.ino}`;
      if (!inodes.has(inode)) inodes.set(inode, key);
      facts.linkedTo = inodes.get(inode);
    }
  }
  if (facts.type === 'chardev' || facts.type === 'blockdev') facts.rdev = st.rdev.toString();
  return facts;
}

/** Lines describing how two trees differ (empty when equal). */
export function diffTrees(a: Map<string, EntryFacts>, b: Map<string, EntryFacts>): string[] {
  const out: string[] = [];
  for (const [k, fa] of a) {
    const fb = b.get(k);
    if (!fb) out.push(`only in first: ${k}`);
    else if (JSON.stringify(fa) !== JSON.stringify(fb)) out.push(`differs: ${k}: ${JSON.stringify(fa)} vs ${JSON.stringify(fb)}`);
  }
  for (const k of b.keys()) if (!a.has(k)) out.push(`only in second: ${k}`);
  return out;
}
