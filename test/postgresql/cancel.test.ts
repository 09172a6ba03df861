// Cancelling in the middle of a COPY (either direction): an `aborted` error, no sessions left on the
// server, and on restore no target and no shadow database left behind.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestRepo, type TestRepo } from '../helpers/repo.js';
import { createDb, dropDb, engineFor, sql, testLogger, uniqueDb, backup } from './pg-fixture.js';
import { runBackup, runRestore } from '../../src/engines/engine.js';
import { isBunkerError } from '../../src/core/errors.js';
import { sideNames } from '../../src/engines/postgresql/restore.js';
import type { ServiceArtifact } from '../../src/repo/types.js';

/** Polls until a COPY runs in `db`, then aborts. */
async function abortDuringCopy(db: string, ac: AbortController, direction: 'TO' | 'FROM'): Promise<boolean> {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    const { rows } = await sql('postgres', `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = '${db}' AND query LIKE 'COPY % ${direction} %' AND state = 'active'`);
    if (rows[0].n > 0) {
      ac.abort();
      return true;
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return false;
}

async function sessionsOn(db: string): Promise<number> {
  const { rows } = await sql('postgres', `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = '${db}'`);
  return rows[0].n;
}

async function settle(db: string): Promise<number> {
  for (let i = 0; i < 100 && (await sessionsOn(db)) > 0; i++) await new Promise((r) => setTimeout(r, 50));
  return sessionsOn(db);
}

describe('postgresql engine: cancelled COPY', () => {
  const source = uniqueDb('cancel');
  const target = uniqueDb('cancel_target');
  let store: TestRepo;
  let artifact: ServiceArtifact;

  beforeAll(async () => {
    store = await createTestRepo();
    await createDb(source);
    // ~100 MB of COPY text: long enough to be caught mid-copy.
    await sql(source, `CREATE TABLE big AS SELECT i, md5(i::text) || repeat('x', 60) AS v FROM generate_series(1, 1000000) i`);
    artifact = await backup(engineFor(source), store.repo);
    await store.repo.flush();
  }, 180_000);

  afterAll(async () => {
    await dropDb(source);
    await dropDb(target);
    await dropDb(sideNames(target).shadow);
    await store?.cleanup();
  });

  it('a backup cancelled mid-COPY fails as aborted and leaves no session behind', async () => {
    const ac = new AbortController();
    const session = await engineFor(source).openBackup({ repo: store.repo, log: testLogger(), progress: () => {}, signal: ac.signal, mode: 'live' });
    const running = runBackup(session);
    const caught = await abortDuringCopy(source, ac, 'TO');
    const err = await running.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(caught).toBe(true);
    expect(isBunkerError(err, 'aborted'), String(err)).toBe(true);
    expect(await settle(source)).toBe(0);
  }, 120_000);

  it('a restore cancelled mid-COPY fails as aborted, creates no target and drops its shadow', async () => {
    const ac = new AbortController();
    const session = await engineFor(target).openRestore({ repo: store.repo, log: testLogger(), progress: () => {}, signal: ac.signal, options: {} }, artifact);
    const running = runRestore(session);
    const caught = await abortDuringCopy(sideNames(target).shadow, ac, 'FROM');
    const err = await running.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(caught).toBe(true);
    expect(isBunkerError(err, 'aborted'), String(err)).toBe(true);
    const { rows } = await sql('postgres', `SELECT datname FROM pg_database WHERE datname IN ('${target}', '${sideNames(target).shadow}')`);
    expect(rows).toEqual([]);
  }, 120_000);
});
