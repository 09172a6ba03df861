// Packs of tiny blobs are cut by blob count as well as by size, so the rows of an unwritten pack and
// its JSON header stay small however small the files of a mount are.
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createTestRepo, type TestRepo } from '../helpers/repo.js';

describe('packs of tiny blobs', () => {
  let t: TestRepo | undefined;
  afterAll(() => t?.cleanup());

  it('are cut at 16,384 blobs, long before 16 MiB, and read back', async () => {
    t = await createTestRepo();
    const refs = [];
    for (let i = 0; i < 40_000; i++) refs.push(await t.repo.storeBuffer(Buffer.from(`tiny file number ${i}\n`)));
    await t.repo.flush();
    const packs = readdirSync(join(t.dir, 'data'), { recursive: true }).filter((name) => /[0-9a-f]{64}$/.test(String(name)));
    // 40,000 blobs of ~20 B would fit one 16 MiB pack; cut by count they need three.
    expect(packs.length).toBeGreaterThanOrEqual(3);
    const again = await t.reopen();
    for (const i of [0, 16_383, 16_384, 39_999]) expect((await again.readBuffer(refs[i]!)).toString()).toBe(`tiny file number ${i}\n`);
    expect((await again.check()).errors).toEqual([]);
  }, 120_000);
});
