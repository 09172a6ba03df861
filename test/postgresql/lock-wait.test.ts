// A restore killed a moment ago still holds its target's lock until its server process sees the
// closed connection. The next restore waits a little for the lock instead of failing at once (a lock
// held for longer is still reported as a restore that is running: sakila.test.ts).
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ServiceArtifact } from '../../src/repo/types.js';
import { createTestRepo, type TestRepo } from '../helpers/repo.js';
import { PG_BASE, backup, createDb, dropDb, engineFor, fingerprint, restore, sql, uniqueDb } from './pg-fixture.js';

describe('postgresql restore: the target lock of a restore that just ended', () => {
  const source = uniqueDb('lockwait_src');
  const target = uniqueDb('lockwait_dst');
  let store: TestRepo;
  let artifact: ServiceArtifact;

  beforeAll(async () => {
    store = await createTestRepo();
    await createDb(source);
    await sql(source, "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 1000) g;");
    artifact = await backup(engineFor(source), store.repo);
    await store.repo.flush();
    await createDb(target);
  }, 120_000);

  afterAll(async () => {
    await dropDb(source);
    await dropDb(target);
    await store?.cleanup();
  });

  /** Holds the lock a restore into `target` takes (in the admin database it uses), as a dying restore's server process would. */
  const holdLock = async () => {
    const holder = new pg.Client({ connectionString: `${PG_BASE}/postgres` });
    await holder.connect();
    await holder.query('SELECT pg_advisory_lock(hashtext($1))', [`bunker restore ${target}`]);
    return holder;
  };

  it('waits for a lock released within seconds, then restores', async () => {
    const holder = await holdLock();
    const released = new Promise<void>((resolve) => setTimeout(() => void holder.end().then(resolve), 1500));
    await restore(engineFor(target), store.repo, artifact);
    await released;
    expect(await fingerprint(target)).toEqual(await fingerprint(source));
  });
});
