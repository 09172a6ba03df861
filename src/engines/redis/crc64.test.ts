import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Crc64, crc64 } from './crc64.js';

describe('crc64 (Jones, as Redis computes it)', () => {
  it('matches the check value of CRC-64/Jones and Redis own test vector', () => {
    expect(crc64(Buffer.from('123456789')).toHex()).toBe('e9c6d914c4b8d9ca');
    expect(crc64(Buffer.alloc(0)).toHex()).toBe('0000000000000000');
  });

  it('gives the same result however the input is split', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), fc.array(fc.nat(200), { maxLength: 5 }), (data, cuts) => {
        const points = [...new Set(cuts.map((c) => c % (data.length + 1)))].sort((a, b) => a - b);
        const crc = new Crc64();
        let prev = 0;
        for (const p of [...points, data.length]) {
          crc.update(data.subarray(prev, p));
          prev = p;
        }
        expect(crc.toHex()).toBe(crc64(data).toHex());
      }),
    );
  });

  it('writes and compares the little-endian trailer', () => {
    const crc = crc64(Buffer.from('123456789'));
    const le = crc.toBufferLE();
    expect(le.toString('hex')).toBe('cad9b8c414d9c6e9');
    expect(crc.equalsLE(le)).toBe(true);
    le[3] = le[3]! ^ 1;
    expect(crc.equalsLE(le)).toBe(false);
  });
});
