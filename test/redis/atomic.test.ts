// Clients reading the target db while a restore runs see the old db or the new one, never a mix.
import { describe, expect, it } from 'vitest';
import { backup, client, restore, SHARED, useDbTrio } from './helpers.js';

const SOURCE = 5;
const TARGET = 6;
const SPARE = 7;
const NEW_KEYS = 60_000;
const OLD_KEYS = 1_000;

describe('redis restore is atomic for readers (db 5 → db 6, spare 7)', () => {
  const dbs = useDbTrio(SOURCE, TARGET, SPARE);
  const { src, dst, spare } = dbs;

  it('never shows a half-restored database', async () => {
    for (let i = 0; i < NEW_KEYS; i += 5000) {
      const p = src.pipeline();
      for (let j = i; j < i + 5000; j++) p.set(`k${j}`, 'new');
      await p.exec();
    }
    await src.set('generation', 'new');
    const artifact = await backup(dbs.t.repo, `${SHARED}/${SOURCE}`);

    const p = dst.pipeline();
    for (let j = 0; j < OLD_KEYS; j++) p.set(`k${j}`, 'old');
    p.set('generation', 'old');
    await p.exec();

    const readers = [client(TARGET), client(TARGET)];
    const seen = { old: 0, new: 0 };
    const mixed: string[] = [];
    let running = true;
    const read = async (r: (typeof readers)[number]) => {
      while (running) {
        // One transaction: a consistent view of several keys and the key count.
        const res = (await r.multi().mget('generation', 'k0', `k${OLD_KEYS - 1}`, `k${NEW_KEYS - 1}`).dbsize().exec())!;
        const values = res[0]![1] as (string | null)[];
        const size = res[1]![1] as number;
        const view = JSON.stringify([values, size]);
        if (values.every((v, i) => (i === 3 ? v === null : v === 'old')) && size === OLD_KEYS + 1) seen.old++;
        else if (values.every((v) => v === 'new') && size === NEW_KEYS + 1) seen.new++;
        else mixed.push(view);
      }
    };
    const readerRuns = readers.map(read);
    await new Promise((r) => setTimeout(r, 50));
    await restore(dbs.t.repo, `${SHARED}/${TARGET}`, artifact, SPARE);
    await new Promise((r) => setTimeout(r, 50));
    running = false;
    await Promise.all(readerRuns);
    for (const r of readers) r.disconnect();

    expect(mixed.slice(0, 5)).toEqual([]);
    expect(seen.old).toBeGreaterThan(0);
    expect(seen.new).toBeGreaterThan(0);
    expect(await dst.dbsize()).toBe(NEW_KEYS + 1);
    expect(await spare.dbsize()).toBe(0);
  });
});
