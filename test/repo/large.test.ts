// Large streams: a 1 GiB round trip that is never held in memory, and dedup of 200 MiB streams.
import { createCipheriv, createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestRepo, type TestRepo } from '../helpers/repo.js';
import type { StreamRef } from '../../src/repo/types.js';

const MiB = 1024 * 1024;
let t: TestRepo;
beforeAll(async () => {
  t = await createTestRepo();
});
afterAll(async () => {
  await t?.cleanup();
});

/** `total` deterministic pseudo-random bytes in 256 KiB pieces; optionally one byte changed. */
function source(seed: number, total: number, changeAt?: number): Readable {
  const cipher = createCipheriv('aes-256-ctr', Buffer.alloc(32, seed), Buffer.alloc(16));
  const piece = 256 * 1024;
  return Readable.from(
    (function* () {
      for (let at = 0; at < total; at += piece) {
        const block = cipher.update(Buffer.alloc(Math.min(piece, total - at)));
        if (changeAt !== undefined && changeAt >= at && changeAt < at + block.length) block[changeAt - at]! ^= 0xff;
        yield block;
      }
    })(),
  );
}

async function store(input: Readable): Promise<{ ref: StreamRef; sha: string }> {
  const hash = createHash('sha256');
  input.on('data', (d: Buffer) => hash.update(d));
  const w = t.repo.writeStream();
  await pipeline(input, w);
  return { ref: await w.done(), sha: hash.digest('hex') };
}

async function readSha(ref: StreamRef): Promise<string> {
  const hash = createHash('sha256');
  for await (const part of t.repo.readStream(ref)) hash.update(part as Buffer);
  return hash.digest('hex');
}

describe('large streams', () => {
  it('round-trips 1 GiB with bounded memory', async () => {
    let peak = 0;
    const base = process.memoryUsage().rss;
    const sample = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
    try {
      const { ref, sha } = await store(source(1, 1024 * MiB));
      expect(ref.size).toBe(1024 * MiB);
      await t.repo.flush();
      expect(await readSha(ref)).toBe(sha);
    } finally {
      clearInterval(sample);
    }
    // Holding the stream would need > 1 GiB; the pipeline needs a few dozen MiB plus GC slack.
    expect(peak - base).toBeLessThan(400 * MiB);
  });

  it('stores the same 200 MiB twice for under 1 % more bytes, and one changed byte adds at most 3 chunks', async () => {
    const size = 200 * MiB;
    const first = await store(source(2, size));
    await t.repo.flush();
    const afterFirst = t.repo.stats();
    const second = await store(source(2, size));
    await t.repo.flush();
    const afterSecond = t.repo.stats();
    expect(second.ref.chunks).toEqual(first.ref.chunks);
    expect(afterSecond.storedBytes - afterFirst.storedBytes).toBeLessThan(size * 0.01);
    expect(afterSecond.newChunks).toBe(afterFirst.newChunks);

    const edited = await store(source(2, size, 123_456_789));
    await t.repo.flush();
    const afterEdit = t.repo.stats();
    expect(edited.sha).not.toBe(first.sha);
    expect(afterEdit.newChunks - afterSecond.newChunks).toBeGreaterThanOrEqual(1);
    expect(afterEdit.newChunks - afterSecond.newChunks).toBeLessThanOrEqual(3);
    expect(await readSha(edited.ref)).toBe(edited.sha);
  });
});
