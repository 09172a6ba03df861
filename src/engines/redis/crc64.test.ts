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

  it('long inputs (the native path) and short ones (JavaScript) at any alignment match a bit-by-bit CRC', () => {
    // The definition itself: reflected CRC-64, one bit at a time, as BigInt.
    const poly = 0x95ac9329ac4bc9b5n;
    const bitwise = (data: Uint8Array) => {
      let crc = 0n;
      for (const byte of data) {
        crc ^= BigInt(byte);
        for (let k = 0; k < 8; k++) crc = crc & 1n ? (crc >> 1n) ^ poly : crc >> 1n;
      }
      return crc.toString(16).padStart(16, '0');
    };
    const data = Buffer.alloc(20_000);
    for (let i = 0; i < data.length; i++) data[i] = (i * 2654435761) >>> 24;
    for (const [offset, length] of [[0, 4095], [0, 4096], [1, 4099], [2, 8191], [3, 10_000], [5, 19_000], [7, 13]] as const) {
      const part = data.subarray(offset, offset + length);
      expect(crc64(part).toHex(), `offset ${offset}, length ${length}`).toBe(bitwise(part));
      // Split into a long and a short piece: both paths carry the state over, in both orders.
      expect(new Crc64().update(part.subarray(0, 4500)).update(part.subarray(4500)).toHex()).toBe(bitwise(part));
      expect(new Crc64().update(part.subarray(0, 100)).update(part.subarray(100)).toHex()).toBe(bitwise(part));
    }
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
