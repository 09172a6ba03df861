import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { BlobIndex, type IndexEntry } from './blob-index.js';

const randomId = () => randomBytes(32).toString('hex');

describe('blob index', () => {
  it('finds every entry it was given across growth, and nothing else', () => {
    const index = new BlobIndex();
    const expected = new Map<string, IndexEntry>();
    for (let i = 0; i < 5000; i++) {
      const entry: IndexEntry = { pack: `pack-${i % 7}`, type: i % 3 === 0 ? 'tree' : 'data', offset: i * 1000, length: 4_000_000_000 - i, rawLength: i };
      const id = randomId();
      index.add(id, entry);
      expected.set(id, entry);
    }
    expect(index.size).toBe(5000);
    for (const [id, entry] of expected) expect(index.get(id)).toEqual(entry);
    for (let i = 0; i < 1000; i++) expect(index.has(randomId())).toBe(false);
    expect([...index.values()].map((e) => e.rawLength).sort((a, b) => a - b)).toEqual([...Array(5000).keys()]);
  });

  it('adds a pack\'s rows as add() adds entries, keeping the first copy of an id', () => {
    const index = new BlobIndex();
    const ids = Array.from({ length: 3000 }, randomId);
    index.addPack('p1', 'tree', ids.slice(0, 2000).map((id, i) => [id, i * 10, i + 1, i + 2] as const));
    // The second pack repeats 500 ids of the first: those rows keep pack p1's entries.
    index.addPack('p2', 'data', ids.slice(1500).map((id, i) => [id, i, 7, 8] as const));
    expect(index.size).toBe(3000);
    expect(index.get(ids[0]!)).toEqual({ pack: 'p1', type: 'tree', offset: 0, length: 1, rawLength: 2 });
    expect(index.get(ids[1999]!)).toEqual({ pack: 'p1', type: 'tree', offset: 19990, length: 2000, rawLength: 2001 });
    expect(index.get(ids[2000]!)).toEqual({ pack: 'p2', type: 'data', offset: 500, length: 7, rawLength: 8 });
    expect(() => index.addPack('p3', 'data', [['xyz', 0, 1, 1]])).toThrow(/not a blob id/);
  });

  it('keeps the first entry of an id added twice', () => {
    const index = new BlobIndex();
    const id = randomId();
    index.add(id, { pack: 'a', type: 'data', offset: 1, length: 2, rawLength: 3 });
    index.add(id, { pack: 'b', type: 'tree', offset: 4, length: 5, rawLength: 6 });
    expect(index.size).toBe(1);
    expect(index.get(id)).toEqual({ pack: 'a', type: 'data', offset: 1, length: 2, rawLength: 3 });
  });

  it('treats ids that are not 64 hex digits as absent, and refuses to add them', () => {
    const index = new BlobIndex();
    const id = randomId();
    index.add(id, { pack: 'a', type: 'data', offset: 0, length: 1, rawLength: 1 });
    expect(index.has(id + '00')).toBe(false);
    expect(index.has(id.slice(0, 62))).toBe(false);
    expect(index.has('zz' + id.slice(2))).toBe(false);
    expect(() => index.add('xyz', { pack: 'a', type: 'data', offset: 0, length: 1, rawLength: 1 })).toThrow(/not a blob id/);
  });
  it('keeps every entry across several row blocks and table growths', () => {
    const index = new BlobIndex();
    const ids: string[] = [];
    for (let i = 0; i < 140_000; i++) {
      const id = randomId();
      ids.push(id);
      index.add(id, { pack: `p${i >> 12}`, type: 'data', offset: i, length: 1, rawLength: i });
    }
    expect(index.size).toBe(140_000);
    for (let i = 0; i < ids.length; i += 997) expect(index.get(ids[i]!)).toEqual({ pack: `p${i >> 12}`, type: 'data', offset: i, length: 1, rawLength: i });
    expect(index.get(ids[139_999]!)?.rawLength).toBe(139_999);
  });
});
