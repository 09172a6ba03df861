// Builds the tree every edge case of the files engine is tested on (issue 3, "Done when").
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, closeSync, linkSync, mkdirSync, openSync, symlinkSync, writeFileSync, writeSync } from 'node:fs';
import { nativeFs } from '../../src/engines/files/native.js';

const NS = 1_000_000_000n;

export interface EdgeTreeOptions {
  /** Size of the sparse file (64 MiB in the round trip). */
  sparseSize?: number;
}

/** Fills `dir` (which exists) with every case; returns whether device nodes could be created here. */
export function buildEdgeTree(dir: string, options: EdgeTreeOptions = {}): { devices: boolean } {
  const native = nativeFs();
  const p = (rel: string) => `${dir}/${rel}`;
  const b = (rel: string | Buffer) => (typeof rel === 'string' ? Buffer.from(p(rel)) : Buffer.concat([Buffer.from(dir + '/'), rel]));

  mkdirSync(p('names'));
  writeFileSync(p('names/caf\u00e9'), 'nfc'); // NFC é
  writeFileSync(p('names/cafe\u0301'), 'nfd'); // NFD e + combining accent: a different name
  writeFileSync(p('names/new\nline'), 'newline in the name');
  writeFileSync(p(`names/${'n'.repeat(255)}`), '255-byte name');
  writeFileSync(b(Buffer.from('names/bad-\xff\xfe-utf8', 'latin1')), 'not UTF-8');
  writeFileSync(p('names/empty'), '');
  mkdirSync(p('names/empty-dir'));

  let deep = p('deep');
  for (let i = 0; i < 40; i++) deep += `/d${i}`;
  mkdirSync(deep, { recursive: true });
  writeFileSync(`${deep}/bottom`, 'forty levels down');

  mkdirSync(p('modes'));
  for (const [name, mode] of [['m600', 0o600], ['m755', 0o755], ['m444', 0o444], ['setuid', 0o4755]] as const) {
    writeFileSync(p(`modes/${name}`), name);
    chmodSync(p(`modes/${name}`), mode);
  }
  mkdirSync(p('modes/sticky'));
  chmodSync(p('modes/sticky'), 0o1777);
  mkdirSync(p('modes/setgid'));
  writeFileSync(p('modes/setgid/inside'), 'x');
  chmodSync(p('modes/setgid'), 0o2755);
  mkdirSync(p('modes/readonly-dir'));
  writeFileSync(p('modes/readonly-dir/f'), 'in a 0555 directory');
  chmodSync(p('modes/readonly-dir'), 0o555);
  writeFileSync(p('modes/owned'), 'owned by 1234:5678');
  chownSync(p('modes/owned'), 1234, 5678);

  mkdirSync(p('times'));
  writeFileSync(p('times/1970'), 'old');
  native.utimens(b('times/1970'), 0n, 12n * NS + 345_678_901n);
  writeFileSync(p('times/2100'), 'future');
  native.utimens(b('times/2100'), 0n, 4_102_444_800n * NS + 999_999_999n);
  writeFileSync(p('times/before-1970'), 'pre-epoch');
  native.utimens(b('times/before-1970'), 0n, -86_400n * NS + 5n);

  mkdirSync(p('links'));
  mkdirSync(p('links/target-dir'));
  writeFileSync(p('links/target-dir/file'), 'reached through a link');
  symlinkSync('target-dir/file', p('links/relative'));
  symlinkSync('/etc/hostname', p('links/absolute'));
  symlinkSync('does/not/exist', p('links/dangling'));
  symlinkSync('target-dir', p('links/to-dir'));
  symlinkSync('../../outside', p('links/escaping'));
  writeFileSync(p('links/hard-a'), 'one inode, three names');
  mkdirSync(p('links/other'));
  linkSync(p('links/hard-a'), p('links/hard-b'));
  linkSync(p('links/hard-a'), p('links/other/hard-c'));

  mkdirSync(p('special'));
  native.mknod(b('special/fifo'), 0o010640, 0n);
  let devices = true;
  try {
    native.mknod(b('special/null-dev'), 0o020666, 0x103n); // like /dev/null: 1,3
  } catch {
    devices = false;
  }

  mkdirSync(p('data'));
  writeFileSync(p('data/random-3m'), randomBytes(3 << 20)); // streamed, several chunks
  // Restored with O_DIRECT in whole 4 KiB blocks: lengths just past the streaming threshold and off
  // the block size exercise the carried-over tail and the padded, truncated last block.
  writeFileSync(p('data/random-1m-plus-1'), randomBytes((1 << 20) + 1));
  writeFileSync(p('data/random-odd'), randomBytes((5 << 20) + 4097));
  writeFileSync(p('data/text'), 'hello '.repeat(10_000));
  const sparse = openSync(p('data/sparse'), 'w');
  const size = options.sparseSize ?? 64 << 20;
  writeSync(sparse, Buffer.from('start'), 0, 5, 0);
  writeSync(sparse, Buffer.from('middle'), 0, 6, Math.floor(size / 2));
  writeSync(sparse, Buffer.from('end'), 0, 3, size - 3);
  closeSync(sparse);

  writeFileSync(p('data/xattr-file'), 'with attributes');
  native.setXattr(b('data/xattr-file'), Buffer.from('user.comment'), Buffer.from('hello'));
  native.setXattr(b('data/xattr-file'), Buffer.from('user.binary'), Buffer.from([0, 1, 2, 255]));
  native.setXattr(b('data'), Buffer.from('user.on-dir'), Buffer.from('dir attribute'));
  chmodSync(dir, 0o750);
  return { devices };
}
