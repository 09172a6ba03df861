import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { isBunkerError } from '../core/errors.js';
import { decodeTree, encodeTree, FLAG_SPARSE, treeReferences, type TreeEntry } from './tree.js';

const id = (c: string) => c.repeat(64);

function entry(name: Buffer | string, over: Partial<TreeEntry>): TreeEntry {
  return {
    name: Buffer.isBuffer(name) ? name : Buffer.from(name),
    type: 'file',
    mode: 0o644,
    uid: 0,
    gid: 0,
    mtimeNs: 0n,
    ctimeNs: 0n,
    ino: 1n,
    flags: 0,
    ...over,
  };
}

describe('tree objects', () => {
  const entries: TreeEntry[] = [
    entry('zeta', { content: { size: 5, chunks: [id('a'), id('b')] }, linkGroup: 3, flags: FLAG_SPARSE }),
    entry(Buffer.from([0xff, 0xfe, 0x0a]), { type: 'dir', mode: 0o1777, subtree: id('c'), uid: 1234, gid: 5678 }),
    entry('link', { type: 'symlink', target: Buffer.from('/etc/../x') , mtimeNs: -1_500_000_001n }),
    entry('dev', { type: 'chardev', rdev: 0x10203n, mtimeNs: 4102444800_123456789n, ino: 2n ** 63n }),
    entry('fifo', { type: 'fifo', mode: 0o6755, xattrs: [[Buffer.from('user.a'), Buffer.from([0, 1, 2])]] }),
    entry('empty', { content: { size: 0, chunks: [] } }),
  ];

  it('round-trips every field, sorted by raw name bytes', () => {
    const decoded = decodeTree(encodeTree(entries));
    const names = decoded.map((e) => e.name);
    expect(names).toEqual([...names].sort(Buffer.compare));
    for (const original of entries) {
      const got = decoded.find((e) => e.name.equals(original.name))!;
      expect(got).toBeDefined();
      expect(got.type).toBe(original.type);
      expect(got.mode).toBe(original.mode);
      expect(got.mtimeNs).toBe(original.mtimeNs);
      expect(got.ino).toBe(original.ino);
      expect(got.content).toEqual(original.content ?? (original.type === 'file' ? { size: 0, chunks: [] } : undefined));
      expect(got.subtree).toBe(original.subtree);
      expect(got.target).toEqual(original.target);
      expect(got.rdev).toBe(original.rdev);
      expect(got.xattrs).toEqual(original.xattrs);
    }
    expect(decoded.find((e) => e.name.toString() === 'zeta')!.linkGroup).toBe(3);
  });

  it('lists subtrees and non-empty streams for check', () => {
    const refs = treeReferences(encodeTree(entries));
    expect(refs.subtrees).toEqual([id('c')]);
    expect(refs.streams).toEqual([{ size: 5, chunks: [id('a'), id('b')] }]);
  });

  it('writes large integers as canonical LEB128 and reads every length back', () => {
    const leb = (v: bigint): number[] => {
      const out: number[] = [];
      do {
        const b = Number(v & 0x7fn);
        v >>= 7n;
        out.push(v > 0n ? b | 0x80 : b);
      } while (v > 0n);
      return out;
    };
    // The ino varint sits where encodings of ino 0 and ino 1 first differ.
    const at = encodeTree([entry('x', { ino: 0n })]).findIndex((b, i) => b !== encodeTree([entry('x', { ino: 1n })])[i]);
    const values = [0n, 127n, 128n, 2n ** 49n - 1n, 2n ** 49n, 2n ** 53n - 1n, 2n ** 53n, 2n ** 60n + 12345n, 2n ** 63n, 2n ** 64n - 1n, 2n ** 64n, 2n ** 70n - 1n, 2n ** 70n, 2n ** 100n + 7n];
    for (const ino of values) {
      const blob = encodeTree([entry('x', { ino })]);
      expect([...blob.subarray(at, at + leb(ino).length)], `ino ${ino}`).toEqual(leb(ino));
      expect(decodeTree(blob)[0]!.ino, `ino ${ino}`).toBe(ino);
    }
    for (const mtimeNs of [-(2n ** 63n), 0n, 2n ** 48n - 1n, 2n ** 48n, -(2n ** 48n), -(2n ** 48n) - 1n, 2n ** 49n + 1n, -(2n ** 52n) - 3n, -1_700_000_000_123_456_789n, -1n, 1n, 1_700_000_000_123_456_789n, 4102444800_999999999n, 2n ** 63n - 1n]) {
      expect(decodeTree(encodeTree([entry('x', { mtimeNs, ctimeNs: -mtimeNs })]))[0]).toMatchObject({ mtimeNs, ctimeNs: -mtimeNs });
    }
    // Random times of every magnitude: the decoder takes a different path below 2^48, up to 2^61 and beyond.
    const random = randomBytes(8 * 3000);
    for (let i = 0; i < 3000; i++) {
      const mtimeNs = random.readBigInt64LE(8 * i) >> BigInt(i % 64);
      expect(decodeTree(encodeTree([entry('x', { mtimeNs, ctimeNs: -mtimeNs - 1n })]))[0]).toMatchObject({ mtimeNs, ctimeNs: -mtimeNs - 1n });
    }
  });

  it('orders entries by unsigned raw name bytes, prefixes first', () => {
    const names = [[0x61], [0x61, 0x00], [0x61, 0x62], [0x7f], [0x80], [0xff], [0xff, 0xfe, 0x0a], [0xc3, 0xa9], [0x65, 0xcc, 0x81], [0x00]];
    const decoded = decodeTree(encodeTree(names.map((n) => entry(Buffer.from(n), {}))));
    expect(decoded.map((e) => [...e.name])).toEqual(names.map((n) => Buffer.from(n)).sort(Buffer.compare).map((b) => [...b]));
  });

  it('copies the bytes of entries decoded with withEncoded, and encodes the rest', () => {
    const blob = encodeTree(entries);
    const decoded = decodeTree(blob, { withEncoded: true });
    expect(decoded.every((e) => e.encoded !== undefined)).toBe(true);
    expect(encodeTree(decoded).equals(blob)).toBe(true);
    // One entry changed and its bytes dropped; the result is what encoding every field gives.
    const changed = decoded.map((e) => (e.name.toString() === 'zeta' ? { ...e, encoded: undefined, mtimeNs: e.mtimeNs + 1n } : e));
    const fresh = decodeTree(blob).map((e) => (e.name.toString() === 'zeta' ? { ...e, mtimeNs: e.mtimeNs + 1n } : e));
    expect(encodeTree(changed).equals(encodeTree(fresh))).toBe(true);
    expect(encodeTree(changed).equals(blob)).toBe(false);
    expect(decodeTree(blob)[0]!.encoded).toBeUndefined();
  });

  it('refuses duplicate names and malformed blobs', () => {
    expect(() => encodeTree([entry('a', {}), entry('a', {})])).toThrow(/duplicate/);
    const good = encodeTree(entries);
    for (const bad of [good.subarray(0, good.length - 3), Buffer.concat([good, Buffer.from([0])]), Buffer.from('nope')]) {
      let err: unknown;
      try {
        decodeTree(bad);
      } catch (e) {
        err = e;
      }
      expect(isBunkerError(err, 'corrupt')).toBe(true);
    }
  });
});
