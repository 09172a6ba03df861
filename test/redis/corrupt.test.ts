// A damaged RDB (flipped bytes, truncation, wrong header) restores nothing and says why.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isBunkerError } from '../../src/core/errors.js';
import type { ServiceArtifact } from '../../src/repo/types.js';
import { createTestRepo, type TestRepo } from '../helpers/repo.js';
import { backup, bytes, client, dumpDb, restore, SHARED } from './helpers.js';

const DB = 8;
const SPARE = 9;

describe('redis restore of a corrupt RDB (db 8, spare 9)', () => {
  let t: TestRepo;
  let artifact: ServiceArtifact;
  let rdb: Buffer;
  const db = client(DB);
  const spare = client(SPARE);

  beforeAll(async () => {
    t = await createTestRepo();
    await Promise.all([db.flushdb(), spare.flushdb()]);
    // One large incompressible value dominates the file, so the middle byte always lies inside it.
    await db.set('big', bytes(2 * 1024 * 1024, 9));
    for (let i = 0; i < 200; i++) await db.hset(`h${i}`, 'a', String(i), 'b', 'x'.repeat(i));
    await db.rpush('list', ...Array.from({ length: 500 }, (_, i) => `e${i}`));
    artifact = await backup(t.repo, `${SHARED}/${DB}`);
    rdb = await t.repo.readBuffer(artifact.streams.rdb!);
    // What the target holds now differs from the backup, so "unchanged" is distinguishable from "restored".
    await db.set('written-after-backup', 'yes');
    await db.del('h0');
  });
  afterAll(async () => {
    await Promise.all([db.flushdb(), spare.flushdb()]);
    db.disconnect();
    spare.disconnect();
    await t.cleanup();
  });

  async function withData(data: Buffer): Promise<ServiceArtifact> {
    const ref = await t.repo.storeBuffer(data);
    return { ...artifact, streams: { rdb: ref } };
  }

  const cases: [string, (b: Buffer) => Buffer, RegExp][] = [
    ['a byte flipped inside a value', (b) => flip(b, Math.floor(b.length / 2)), /checksum does not match/],
    ['the checksum trailer changed', (b) => flip(b, b.length - 1), /checksum does not match/],
    ['truncated to 60%', (b) => b.subarray(0, Math.floor(b.length * 0.6)), /truncated/],
    ['truncated inside the trailer', (b) => b.subarray(0, b.length - 3), /truncated/],
    ['a damaged header', (b) => flip(b, 0), /does not start with an RDB header/],
  ];

  for (const [name, damage, message] of cases) {
    it(`refuses ${name} and leaves the target as it was`, async () => {
      const before = await dumpDb(db);
      const bad = await withData(damage(Buffer.from(rdb)));
      const err = await restore(t.repo, `${SHARED}/${DB}`, bad, SPARE).then(
        () => null,
        (e: unknown) => e,
      );
      expect(isBunkerError(err, 'corrupt'), String(err)).toBe(true);
      expect((err as Error).message).toMatch(message);
      expect(await dumpDb(db)).toEqual(before);
      expect(await spare.dbsize()).toBe(0);
    });
  }

  it('restores the undamaged copy (the damage above was the only cause)', async () => {
    await restore(t.repo, `${SHARED}/${DB}`, await withData(rdb), SPARE);
    expect(await db.exists('written-after-backup')).toBe(0);
    expect(await db.hget('h0', 'a')).toBe('0');
    expect((await db.getBuffer('big'))!.equals(bytes(2 * 1024 * 1024, 9))).toBe(true);
  });
});

function flip(b: Buffer, at: number): Buffer {
  b[at] = b[at]! ^ 0xff;
  return b;
}
