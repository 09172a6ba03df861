// A restore killed a moment ago still holds its target's lock until the server sees its connection
// closed. The next restore waits a little for the lock instead of failing at once; a lock held past
// that wait is reported as a restore that is running.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RowDataPacket } from 'mysql2/promise';
import { isBunkerError } from '../../src/core/errors.js';
import { silentLogger } from '../../src/core/log.js';
import { runBackup, runRestore } from '../../src/engines/engine.js';
import type { ServiceArtifact } from '../../src/repo/types.js';
import { createTestRepo, type TestRepo } from '../helpers/repo.js';
import { admin, dropDb, engineFor, uniqueDb } from './helpers.js';

const source = uniqueDb('lockwait');
const target = uniqueDb('lockwait_target');
const signal = new AbortController().signal;
let repo: TestRepo;
let artifact: ServiceArtifact;

beforeAll(async () => {
  repo = await createTestRepo();
  const conn = await admin();
  await conn.query(`CREATE DATABASE ${source}`);
  await conn.query(`CREATE TABLE ${source}.t (id INT PRIMARY KEY, v VARCHAR(10))`);
  await conn.query(`INSERT INTO ${source}.t VALUES (1, 'a'), (2, 'b'), (3, 'c')`);
  await conn.end();
  artifact = await runBackup(await engineFor(source).openBackup({ repo: repo.repo, log: silentLogger, progress() {}, signal, mode: 'live' }));
  await repo.repo.flush();
});

afterAll(async () => {
  await dropDb(source, target);
  await repo?.cleanup();
});

const restoreInto = async () =>
  runRestore(await engineFor(target).openRestore({ repo: repo.repo, log: silentLogger, progress() {}, signal, options: {} }, artifact));

/** Holds the lock a restore into `target` takes, as the server thread of a dying restore would. */
async function holdLock() {
  const holder = await admin();
  await holder.query('SELECT GET_LOCK(?, 0)', [`bunker-restore:${target}`]);
  return holder;
}

describe('mariadb restore: the target lock of a restore that just ended', () => {
  it('waits for a lock released within seconds, then restores', async () => {
    const holder = await holdLock();
    const released = new Promise<void>((resolve) => setTimeout(() => void holder.end().then(resolve), 1500));
    await restoreInto();
    await released;
    const conn = await admin();
    const [rows] = await conn.query<RowDataPacket[]>(`SELECT id, v FROM ${target}.t ORDER BY id`);
    await conn.end();
    expect(rows.map((r) => [r.id, r.v])).toEqual([[1, 'a'], [2, 'b'], [3, 'c']]);
  });

  it('reports a lock held past the wait as a restore that is running', async () => {
    const holder = await holdLock();
    try {
      const err = await restoreInto().then(() => undefined, (e: unknown) => e);
      expect(isBunkerError(err, 'locked')).toBe(true);
    } finally {
      await holder.end();
    }
  });
});
