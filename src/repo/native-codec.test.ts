import { createHash, createHmac, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { NativeCodec } from './native-codec.js';

const keys = { encKey: randomBytes(32), idKey: randomBytes(32) };
const codec = new NativeCodec(keys, 2);
const hmac = (data: Uint8Array) => createHmac('sha256', keys.idKey).update(data).digest('hex');
const text = (n: number) => Buffer.from('INSERT INTO t VALUES (1, 2, 3);\n'.repeat(Math.ceil(n / 32)).slice(0, n));

describe('native codec', () => {
  it('ids are HMAC-SHA-256 with the id key, on the pool and on the calling thread', async () => {
    for (const data of [Buffer.alloc(0), randomBytes(1), randomBytes(100_000)]) {
      expect(await codec.hash(data)).toBe(hmac(data));
      expect(codec.hashSync(data)).toBe(hmac(data));
    }
  });

  it('ids of requests waiting for the pool, hashed two at a time, match HMAC-SHA-256 at every padding edge', async () => {
    const sizes = [0, 1, 55, 56, 63, 64, 65, 119, 120, 127, 128, 129, 1000, 70_000, (1 << 20) + 37];
    const blobs = sizes.flatMap((n) => [randomBytes(n), randomBytes(n)]);
    // As pieces with edges inside and between blocks, and an empty piece: the codec walks them as one.
    const asPieces = (b: Buffer) => [3, 3, 70, 200, 65_600].reduce<{ parts: Buffer[]; at: number }>(
      (acc, end) => ({ parts: [...acc.parts, b.subarray(acc.at, Math.max(acc.at, Math.min(end, b.length)))], at: Math.max(acc.at, Math.min(end, b.length)) }),
      { parts: [], at: 0 },
    );
    const ids = await Promise.all(blobs.map((b, i) => {
      const { parts, at } = asPieces(b);
      return codec.hash(i % 3 === 0 ? b : [...parts, b.subarray(at)]);
    }));
    expect(ids).toEqual(blobs.map(hmac));
  });

  it('round-trips compressible, incompressible and tiny blobs, compressing only what pays', async () => {
    for (const [data, compresses] of [
      [text(1 << 20), true],
      [randomBytes(1 << 20), false],
      [randomBytes(300 * 1024), false], // sampled and skipped
      [Buffer.from('x'), false], // too small to try
    ] as const) {
      const { sealed, compressed } = await codec.seal(data, 3);
      expect(compressed).toBe(compresses);
      if (compresses) expect(sealed.length).toBeLessThan(data.length / 4);
      const { plain, id } = await codec.open(sealed, data.length, 'blob T');
      expect(plain.equals(data)).toBe(true);
      expect(id).toBe(hmac(data));
    }
  });

  it('opens in place: a raw blob\'s plaintext is a view of the sealed bytes, a compressed one is new; damage is still refused', async () => {
    for (const [data, compresses] of [
      [randomBytes(1 << 20), false],
      [text(1 << 20), true],
    ] as const) {
      const { sealed, compressed } = await codec.seal(data, 3);
      expect(compressed).toBe(compresses);
      // At an offset inside a larger buffer, as a blob inside a ranged read of a pack.
      const pack = Buffer.concat([randomBytes(100), sealed, randomBytes(100)]);
      const before = Buffer.from(pack);
      const inPack = pack.subarray(100, 100 + sealed.length);
      const { plain, id } = await codec.open(inPack, data.length, 'blob I', { inPlace: true });
      expect(plain.equals(data)).toBe(true);
      expect(id).toBe(hmac(data));
      expect(plain.buffer === pack.buffer).toBe(!compresses);
      // Only the blob's own bytes were decrypted over; its neighbours are untouched.
      expect(pack.subarray(0, 100).equals(before.subarray(0, 100))).toBe(true);
      expect(pack.subarray(100 + sealed.length).equals(before.subarray(100 + sealed.length))).toBe(true);
      const damaged = Buffer.from(sealed);
      damaged[damaged.length >> 1]! ^= 1;
      await expect(codec.open(damaged, data.length, 'blob J', { inPlace: true })).rejects.toThrow(/blob J failed authentication/);
      // An index claiming a longer plaintext: a raw blob comes back at its own length (which the
      // repository's length check refuses), never as a view reaching into the next blob.
      const again = Buffer.concat([sealed, randomBytes(100)]);
      const r = codec.open(again.subarray(0, sealed.length), data.length + 100, 'blob K', { inPlace: true });
      if (compresses) await expect(r).rejects.toThrow(/blob K/);
      else expect((await r).plain.length).toBe(data.length);
    }
  });

  it('seals a blob given as parts like the joined bytes (samples and raw encryption cross part edges)', async () => {
    for (const [data, level, compresses] of [
      [randomBytes(700_000), 3, false], // sampled across parts, then encrypted part by part
      [randomBytes(700_000), 0, false],
      [text(700_000), 3, true],
      [Buffer.concat([randomBytes(340_000), text(360_000)]), 3, true], // the middle and last samples are text
    ] as const) {
      // Part edges inside the first, middle (341,808-358,192) and last (683,616-700,000) samples, and an empty part.
      const edges = [0, 5, 5, 350_000, 690_000, data.length];
      const parts = edges.slice(1).map((end, i) => data.subarray(edges[i], end));
      const { sealed, compressed } = await codec.seal(parts, level);
      expect(compressed).toBe(compresses);
      if (!compresses) expect(sealed.length).toBe(data.length + 29);
      const { plain, id } = await codec.open(sealed, data.length, 'blob P');
      expect(plain.equals(data)).toBe(true);
      expect(id).toBe(hmac(data));
    }
  });

  it('stores raw at level 0', async () => {
    const data = text(100_000);
    const { sealed, compressed } = await codec.seal(data, 0);
    expect(compressed).toBe(false);
    expect(sealed.length).toBe(data.length + 29);
  });

  it('reports a flipped bit, a truncation and a wrong expected length as a corrupt blob', async () => {
    const data = text(200_000);
    const { sealed } = await codec.seal(data, 3);
    const flipped = Buffer.from(sealed);
    flipped[20]! ^= 1;
    await expect(codec.open(flipped, data.length, 'blob X')).rejects.toThrow(/blob X failed authentication/);
    await expect(codec.open(sealed.subarray(0, sealed.length - 1), data.length, 'blob Y')).rejects.toThrow(/blob Y/);
    await expect(codec.open(sealed.subarray(0, 10), data.length, 'blob Z')).rejects.toThrow(/blob Z/);
    // A frame that decompresses to more than the index says is refused, not allocated.
    await expect(codec.open(sealed, data.length - 1, 'blob W')).rejects.toThrow(/blob W/);
  });

  it('refuses work once closed', async () => {
    const closing = new NativeCodec(keys, 1);
    closing.close();
    await expect(closing.seal(text(10), 3)).rejects.toThrow(/closed/);
  });
});

describe('native sha256', () => {
  it('is the SHA-256 of the parts concatenated', async () => {
    const parts = [randomBytes(1000), Buffer.alloc(0), randomBytes(70_000)];
    expect(await codec.sha256(parts)).toBe(createHash('sha256').update(Buffer.concat(parts)).digest('hex'));
    expect(await codec.sha256([])).toBe(createHash('sha256').digest('hex'));
  });
});

describe('tiny blobs on the calling thread', () => {
  it('seals and opens blobs under 4 KiB the same way, and reports damage the same way', async () => {
    for (const data of [Buffer.from('a'), text(3000), randomBytes(4000)]) {
      const { sealed } = await codec.seal(data, 3);
      const { plain, id } = await codec.open(sealed, data.length, 'tiny');
      expect(plain.equals(data)).toBe(true);
      expect(id).toBe(hmac(data));
      const damaged = Buffer.from(sealed);
      damaged[damaged.length - 1]! ^= 0x80;
      await expect(codec.open(damaged, data.length, 'tiny blob')).rejects.toThrow(/tiny blob failed authentication/);
    }
  });
});

describe('blobs given as pieces', () => {
  it('hashes and seals the pieces as the blob they join into', async () => {
    const whole = text(300_000);
    const pieces = [whole.subarray(0, 1), whole.subarray(1, 70_000), whole.subarray(70_000, 70_000), whole.subarray(70_000)];
    expect(await codec.hash(pieces)).toBe(hmac(whole));
    expect(codec.hashSync(pieces)).toBe(hmac(whole));
    const { sealed } = await codec.seal(pieces, 3);
    const { plain } = await codec.open(sealed, whole.length, 'pieces');
    expect(plain.equals(whole)).toBe(true);
  });
});

describe('blobs bound to their ids (format 3)', () => {
  it('open only under the id they were sealed with, on the pool, in place and on the calling thread', async () => {
    for (const data of [randomBytes(1 << 20), text(1 << 20), text(3000), Buffer.alloc(0)]) {
      const id = hmac(data);
      const other = hmac(Buffer.concat([data, Buffer.from('x')]));
      const { sealed } = await codec.seal(data, 3, id);
      for (const inPlace of [false, true]) {
        const opened = await codec.open(Buffer.from(sealed), data.length, 'bound', { inPlace, boundId: id, hashPlain: false });
        expect(opened.plain.equals(data)).toBe(true);
        expect(opened.id).toBeUndefined(); // not recomputed: the binding already names the blob
        const rehashed = await codec.open(Buffer.from(sealed), data.length, 'bound', { inPlace, boundId: id });
        expect(rehashed.id).toBe(id);
        // Under another id, or with no id, the tag does not verify.
        await expect(codec.open(Buffer.from(sealed), data.length, 'blob B', { inPlace, boundId: other, hashPlain: false })).rejects.toThrow(/blob B failed authentication/);
        await expect(codec.open(Buffer.from(sealed), data.length, 'blob C', { inPlace })).rejects.toThrow(/blob C failed authentication/);
      }
      // An unbound blob (formats 1 and 2) does not open as a bound one.
      const { sealed: unbound } = await codec.seal(data, 3);
      await expect(codec.open(unbound, data.length, 'blob U', { boundId: id, hashPlain: false })).rejects.toThrow(/blob U failed authentication/);
    }
  });

  it('refuses an id that is not 64 hex digits', async () => {
    await expect(codec.seal(randomBytes(10_000), 3, 'xyz')).rejects.toThrow(/bad arguments/);
    await expect(codec.seal(randomBytes(100), 3, '0'.repeat(63) + 'g')).rejects.toThrow(/bad arguments/);
  });
});

describe('a run of blobs opened with one call', () => {
  /** Seals `blobs` back to back with gaps of junk between them, as a ranged read of a pack holds them. */
  async function packOf(blobs: Buffer[], bound: boolean) {
    const parts: Buffer[] = [];
    const run: { offset: number; length: number; rawLength: number; id: string; at: number }[] = [];
    let offset = 0;
    let at = 0;
    for (const [i, data] of blobs.entries()) {
      const gap = randomBytes(i % 3 === 1 ? 50 : 0);
      const { sealed } = await codec.seal(data, 3, bound ? hmac(data) : undefined);
      parts.push(gap, sealed);
      offset += gap.length;
      run.push({ offset, length: sealed.length, rawLength: data.length, id: hmac(data), at });
      offset += sealed.length;
      at += data.length;
    }
    return { sealed: Buffer.concat(parts), run, total: at };
  }
  const mixed = () => [text(5000), randomBytes(3000), Buffer.alloc(0), text(200_000), randomBytes(1 << 20), text(17)];

  it('puts each plaintext at its place in out, bound or with ids recomputed, on the pool and on the calling thread', async () => {
    for (const bound of [true, false]) {
      for (const blobs of [mixed(), [text(100)], [text(300), randomBytes(40)]]) {
        const { sealed, run, total } = await packOf(blobs, bound);
        // Placed in reverse order, so `at` is followed rather than the order in the pack.
        let at = 0;
        for (let i = run.length - 1; i >= 0; i--) (run[i]!.at = at), (at += blobs[i]!.length);
        const out = Buffer.alloc(total, 0xee);
        await codec.openRun(sealed, run, out, bound, (i) => `blob ${i}`);
        expect(out.equals(Buffer.concat([...blobs].reverse()))).toBe(true);
      }
    }
  });

  it('names the blob that is damaged, or bound to another id, or whose plaintext is another blob', async () => {
    const blobs = mixed();
    const { sealed, run, total } = await packOf(blobs, true);
    const flipped = Buffer.from(sealed);
    flipped[run[3]!.offset + 40]! ^= 1;
    await expect(codec.openRun(flipped, run, Buffer.alloc(total), true, (i) => `blob #${i}`)).rejects.toThrow(/blob #3 failed authentication/);
    const wrongId = run.map((b, i) => (i === 4 ? { ...b, id: hmac(Buffer.from('other')) } : b));
    await expect(codec.openRun(Buffer.from(sealed), wrongId, Buffer.alloc(total), true, (i) => `blob #${i}`)).rejects.toThrow(/blob #4 failed authentication/);
    // Unbound (formats 1 and 2): the blob opens, but its recomputed id is not the one asked for.
    const plain = await packOf(blobs, false);
    const swapped = plain.run.map((b, i) => (i === 0 ? { ...b, id: hmac(Buffer.from('other')) } : b));
    await expect(codec.openRun(plain.sealed, swapped, Buffer.alloc(plain.total), false, (i) => `blob #${i}`)).rejects.toThrow(/blob #0 does not match its id/);
    // A wrong plaintext length, raw and compressed.
    for (const k of [1, 3]) {
      const again = await packOf(blobs, true);
      const short = again.run.map((b, i) => (i === k ? { ...b, rawLength: b.rawLength - 1 } : b));
      await expect(codec.openRun(again.sealed, short, Buffer.alloc(again.total), true, (i) => `blob #${i}`)).rejects.toThrow(new RegExp(`blob #${k} failed`));
    }
  });

  it('refuses a layout that points outside the sealed bytes or the output', async () => {
    const { sealed, run, total } = await packOf([text(6000), text(7000)], true);
    const outside = run.map((b, i) => (i === 1 ? { ...b, length: b.length + 1 } : b));
    await expect(codec.openRun(sealed, outside, Buffer.alloc(total), true, String)).rejects.toThrow(/every blob inside sealed/);
    await expect(codec.openRun(sealed, run, Buffer.alloc(total - 1), true, String)).rejects.toThrow(/every plaintext inside out/);
  });
});
