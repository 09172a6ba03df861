import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { BlobIndex } from './blob-index.js';
import { decodeIndexFile, encodeIndexFile, INDEX_ROW_BYTES, packRecord, type PackRecord } from './index-file.js';

const randomId = () => randomBytes(32).toString('hex');

function randomPacks(n: number): PackRecord[] {
  return Array.from({ length: n }, (_, p) => ({
    id: randomId(),
    type: p % 2 ? 'tree' : 'data',
    blobs: Array.from({ length: p * 50 }, (_, i) => [randomId(), i * 70_000, 4_294_967_295 - i, i] as [string, number, number, number]),
  }));
}

describe('index files', () => {
  it('decode what they encode, binary, including a pack with no blobs', () => {
    const packs = randomPacks(5);
    const encoded = encodeIndexFile(packs);
    expect(encoded.subarray(0, 4).toString('latin1')).toBe('BKI\x04');
    expect(encoded.length).toBe(4 + 5 * 37 + (0 + 50 + 100 + 150 + 200) * INDEX_ROW_BYTES);
    expect(decodeIndexFile(encoded, 'index/x').map(packRecord)).toEqual(packs);
  });

  it('read the JSON index files of formats 1-3', () => {
    const packs = randomPacks(3);
    const json = Buffer.from(JSON.stringify({ version: 1, packs }));
    expect(decodeIndexFile(json, 'index/x').map(packRecord)).toEqual(packs);
  });

  it('refuse damaged contents with an error naming the file', () => {
    const encoded = encodeIndexFile(randomPacks(3));
    const badType = Buffer.from(encoded);
    badType[4 + 32] = 7;
    const cases: Array<[Buffer, RegExp]> = [
      [Buffer.from('BKI\x09rest'), /unknown format/],
      [encoded.subarray(0, 4 + 20), /truncated \(a pack's entry/],
      [encoded.subarray(0, encoded.length - 1), /truncated \(pack [0-9a-f]{64} lists 100 blobs\)/],
      [badType, /unknown type 7/],
      [Buffer.from(JSON.stringify({ version: 2, packs: [] })), /unknown format/],
      [Buffer.from(JSON.stringify({ version: 1, packs: [{ id: randomId(), type: 'data' }] })), /malformed pack/],
    ];
    for (const [plain, message] of cases) {
      expect(() => decodeIndexFile(plain, 'index/damaged'), String(message)).toThrow(message);
      try {
        decodeIndexFile(plain, 'index/damaged');
      } catch (err) {
        expect((err as { code?: string }).code).toBe('corrupt');
        expect((err as Error).message).toContain('index/damaged');
      }
    }
  });

  it('refuse to encode an id that is not 64 hex digits', () => {
    const [pack] = randomPacks(2).slice(1);
    pack!.blobs[3]![0] = 'zz' + pack!.blobs[3]![0].slice(2);
    expect(() => encodeIndexFile([pack!])).toThrow(/not a blob or pack id/);
  });

  it('load into the blob index from their bytes as from decoded rows, the first copy of a blob winning', () => {
    const packs = randomPacks(4);
    packs[3]!.blobs[0]![0] = packs[2]!.blobs[5]![0]; // one blob in two packs
    const fromRows = new BlobIndex();
    for (const p of decodeIndexFile(encodeIndexFile(packs), 'index/x')) {
      if (!('rows' in p)) throw new Error('expected binary rows');
      fromRows.addPackRows(p.id, p.type, p.rows, p.count);
    }
    const fromObjects = new BlobIndex();
    for (const p of packs) fromObjects.addPack(p.id, p.type, p.blobs);
    expect(fromRows.size).toBe(50 + 100 + 150 - 1);
    for (const p of packs) for (const [id] of p.blobs) expect(fromRows.get(id)).toEqual(fromObjects.get(id));
    expect(fromRows.get(packs[3]!.blobs[0]![0])!.pack).toBe(packs[2]!.id);
  });
});
