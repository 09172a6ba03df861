// Every type and encoding survives backup → restore with equal values, encodings and expiry (ms).
import { describe, expect, it } from 'vitest';
import { backup, dumpDb, restore, SHARED, useDbTrio } from './helpers.js';
import { EXPECTED_ENCODINGS, fillEveryType } from './fill.js';

const SOURCE = 2;
const TARGET = 3;
const SPARE = 4;

describe('redis engine round trip (shared server, db 2 → db 3, spare 4)', () => {
  const dbs = useDbTrio(SOURCE, TARGET, SPARE);
  const { src, dst, spare } = dbs;

  it('restores every type into another db index, replacing what was there', async () => {
    await fillEveryType(src);
    await dst.set('stale', 'must disappear');
    const before = await dumpDb(src);
    for (const [key, encodings] of Object.entries(EXPECTED_ENCODINGS)) {
      expect(encodings, key).toContain(before.get(Buffer.from(key).toString('hex'))?.encoding);
    }

    const artifact = await backup(dbs.t.repo, `${SHARED}/${SOURCE}`);
    expect(artifact.meta.db).toBe(SOURCE);
    expect(artifact.meta.keys).toBe(before.size);
    expect(artifact.meta.dbs).toEqual({ [String(SOURCE)]: before.size });

    await restore(dbs.t.repo, `${SHARED}/${TARGET}`, artifact, SPARE);
    const after = await dumpDb(dst);
    expect([...after.keys()].sort()).toEqual([...before.keys()].sort());
    for (const [key, value] of before) expect(after.get(key), Buffer.from(key, 'hex').toString()).toEqual(value);
    expect(await spare.dbsize()).toBe(0);
    const ttl = after.get(Buffer.from('ttl:hash').toString('hex'))!;
    expect(ttl.expireMs).toBeGreaterThan(Date.now());
  });

  it('skips keys that expired after the backup', async () => {
    await src.flushdb();
    await src.set('lasting', '1');
    await src.set('fleeting', '2', 'PX', 400);
    const artifact = await backup(dbs.t.repo, `${SHARED}/${SOURCE}`);
    expect(artifact.meta.keys).toBe(2);
    await new Promise((r) => setTimeout(r, 500));
    await restore(dbs.t.repo, `${SHARED}/${TARGET}`, artifact, SPARE);
    expect(await dst.get('lasting')).toBe('1');
    expect(await dst.exists('fleeting')).toBe(0);
    expect(await dst.dbsize()).toBe(1);
  });
});
