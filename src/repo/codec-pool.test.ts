import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { CodecPool } from './codec-pool.js';

let pool: CodecPool | undefined;
afterEach(async () => {
  await pool?.close();
  pool = undefined;
});

describe('codec pool', () => {
  it('returns small sealed and opened blobs in buffers of their own, not slices of a shared pool', async () => {
    pool = new CodecPool({ encKey: randomBytes(32), idKey: randomBytes(32) }, 1);
    for (const size of [1, 100, 3000]) {
      const plain = randomBytes(size);
      const { sealed } = await pool.seal(Buffer.from(plain), 3);
      // A transferred slice of the worker's 8 KiB pool would bring the whole pool along.
      expect(sealed.buffer.byteLength).toBe(sealed.length);
      const opened = await pool.open(sealed, 'test blob');
      expect(opened.plain.equals(plain)).toBe(true);
      expect(opened.plain.buffer.byteLength).toBe(opened.plain.length);
    }
  });

  it('reports a damaged sealed blob as corrupt', async () => {
    pool = new CodecPool({ encKey: randomBytes(32), idKey: randomBytes(32) }, 1);
    const { sealed } = await pool.seal(randomBytes(5000), 3);
    sealed[20]! ^= 1;
    await expect(pool.open(sealed, 'blob X')).rejects.toThrow(/blob X failed authentication/);
  });
});
