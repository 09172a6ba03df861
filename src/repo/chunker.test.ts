import { createHash, randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Chunker, chunkBuffer, gearTable } from './chunker.js';
import { prngBytes } from '../../test/helpers/random.js';


const SMALL = { min: 2048, avg: 8192, max: 65536 };
const gear = gearTable(Buffer.alloc(32, 1));

describe('chunker golden vectors', () => {
  // Frozen outputs: any change to the gear derivation or the cut rule changes chunk boundaries,
  // which would silently break dedup against existing repositories. Change them only with a format bump.
  it('derives the gear table from the key', () => {
    expect([...new Uint32Array(gear.buffer, 0, 4)]).toEqual([807499819, 3377972011, 678557071, 2602382008]);
    expect(gearTable(Buffer.alloc(32, 2))[0]).not.toBe(gear[0]);
  });

  it('cuts small-parameter input at the recorded boundaries', () => {
    const sizes = chunkBuffer(gear, prngBytes(256 * 1024, 1), SMALL).map((c) => c.length);
    expect(sizes).toEqual([
      14056, 8637, 8454, 8485, 11848, 8972, 9764, 14361, 8266, 10085, 10180, 9278, 12049, 11097, 9484, 12810, 8552, 12626,
      9191, 9075, 11311, 10757, 4397, 4298, 10045, 9455, 4611,
    ]);
  });

  it('cuts default-parameter input at the recorded boundaries', () => {
    const chunks = chunkBuffer(gear, prngBytes(24 * 1024 * 1024, 2));
    expect(chunks.map((c) => c.length)).toEqual([
      1198884, 1362416, 1410685, 1120198, 1825847, 1918855, 1858607, 879091, 1076312, 1086354, 1082015, 1871838, 1128823,
      1384983, 1164698, 1155553, 2019844, 1197077, 423744,
    ]);
    expect(createHash('sha256').update(chunks[0]!).digest('hex')).toBe('80d163e5a279b48db77e6c3409976a987b14dc700737d80f679fa58bdc3f612b');
  });
});

describe('chunker properties', () => {
  it('gives the same chunks however the input is split, and respects min/max', () => {
    const data = randomBytes(400 * 1024);
    const whole = chunkBuffer(gear, data, SMALL);
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 70000 }), { minLength: 1, maxLength: 20 }), (pieces) => {
        const c = new Chunker(gear, SMALL);
        const out: Buffer[] = [];
        let at = 0;
        for (let i = 0; at < data.length; i++) {
          const n = pieces[i % pieces.length]!;
          out.push(...c.push(data.subarray(at, at + n)).map((chunk) => Buffer.concat(chunk.pieces, chunk.length)));
          at += n;
        }
        const last = c.finish();
        if (last) out.push(Buffer.concat(last.pieces, last.length));
        expect(out.map((b) => b.length)).toEqual(whole.map((b) => b.length));
        expect(Buffer.concat(out).equals(data)).toBe(true);
      }),
      { numRuns: 30 },
    );
    for (const chunk of whole.slice(0, -1)) {
      expect(chunk.length).toBeGreaterThanOrEqual(SMALL.min);
      expect(chunk.length).toBeLessThanOrEqual(SMALL.max);
    }
  });

  it('cuts constant input into equal chunks within the limits', () => {
    const sizes = chunkBuffer(gear, Buffer.alloc(200_000), SMALL).map((c) => c.length);
    expect(sizes.length).toBeGreaterThan(2);
    expect(new Set(sizes.slice(0, -1)).size).toBe(1);
    expect(sizes[0]).toBeGreaterThanOrEqual(SMALL.min);
    expect(sizes[0]).toBeLessThanOrEqual(SMALL.max);
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(200_000);
  });

  it('resynchronises after an insertion: only the chunks around it change', () => {
    const data = randomBytes(2 * 1024 * 1024);
    const edited = Buffer.concat([data.subarray(0, 1_000_000), Buffer.from('inserted!'), data.subarray(1_000_000)]);
    const hash = (b: Buffer) => createHash('sha256').update(b).digest('hex');
    const before = new Set(chunkBuffer(gear, data, SMALL).map(hash));
    const after = chunkBuffer(gear, edited, SMALL).map(hash);
    expect(after.filter((h) => !before.has(h)).length).toBeLessThanOrEqual(3);
  });

  it('depends on the key: another key cuts elsewhere', () => {
    const data = prngBytes(256 * 1024, 5);
    const a = chunkBuffer(gear, data, SMALL).map((c) => c.length);
    const b = chunkBuffer(gearTable(Buffer.alloc(32, 9)), data, SMALL).map((c) => c.length);
    expect(a).not.toEqual(b);
  });
});
