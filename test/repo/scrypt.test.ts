// The repository's scrypt (native codec: SSE2 on x86-64, a thread per lane) must give exactly the bytes node:crypto's
// scrypt gives: key slots written by either open with the other.
import { randomBytes, scryptSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { deriveKey, PRODUCTION_SCRYPT } from '../../src/repo/crypto.js';
import { codecAddon } from '../../src/repo/native-codec.js';

const addon = codecAddon();

describe('scrypt', () => {
  it('matches the RFC 7914 test vectors', async () => {
    const vectors = [
      ['', '', 16, 1, 1, 64, '77d6576238657b203b19ca42c18a0497f16b4844e3074ae8dfdffa3fede21442fcd0069ded0948f8326a753a0fc81f17e8d3e0fb2e0d3628cf35e20c38d18906'],
      ['password', 'NaCl', 1024, 8, 16, 64, 'fdbabe1c9d3472007856e7190d01e9fe7c6ad7cbc8237830e77376634b3731622eaf30d92e22a3886ff109279d9830dac727afb94a83ee6d8360cbdfa2cc0640'],
    ] as const;
    for (const [password, salt, N, r, p, length, hex] of vectors) {
      const key = await addon.scrypt(Buffer.from(password), Buffer.from(salt), N, r, p, length);
      expect(key.toString('hex')).toBe(hex);
    }
  });

  it('gives the same bytes as node:crypto for random passwords, salts and parameters', async () => {
    for (let i = 0; i < 24; i++) {
      const password = randomBytes(i * 3);
      const salt = randomBytes(1 + (i % 32));
      const [N, r, p, length] = [1 << (1 + (i % 12)), 1 + (i % 9), 1 + (i % 3), 1 + i * 7];
      const expected = scryptSync(password, salt, length, { N, r, p, maxmem: 1 << 30 });
      expect((await addon.scrypt(password, salt, N, r, p, length)).equals(expected), `N=${N} r=${r} p=${p} length=${length}`).toBe(true);
    }
  });

  it('derives repository keys as before (NFC-normalised UTF-8 password, 32 bytes)', async () => {
    const salt = randomBytes(16);
    const params = { N: 1 << 14, r: 8, p: 1 };
    const decomposed = 'Cafe\u0301 pässwörd';
    const expected = scryptSync(decomposed.normalize('NFC'), salt, 32, { ...params, maxmem: 1 << 30 });
    expect((await deriveKey(decomposed, salt, params)).equals(expected)).toBe(true);
  });

  it('derives the production parameters (two lanes, run on two threads) as node:crypto does', async () => {
    const salt = randomBytes(16);
    const expected = scryptSync('production pw', salt, 32, { ...PRODUCTION_SCRYPT, maxmem: 1 << 30 });
    expect(PRODUCTION_SCRYPT.p).toBeGreaterThan(1);
    expect((await deriveKey('production pw', salt, PRODUCTION_SCRYPT)).equals(expected)).toBe(true);
  });

  it('refuses parameters scrypt does not define or that would take more than 1 GiB', () => {
    const pw = Buffer.from('pw');
    const salt = Buffer.from('salt');
    expect(() => addon.scrypt(pw, salt, 1000, 8, 1, 32)).toThrow(/power of two/);
    expect(() => addon.scrypt(pw, salt, 1 << 21, 8, 1, 32)).toThrow(/1 GiB/);
    expect(() => addon.scrypt(pw, salt, 1024, 0, 1, 32)).toThrow(RangeError);
  });
});
