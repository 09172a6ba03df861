// Sakila round trip: backup, damage, restore; and restore into another database. SHOW CREATE of
// every object and an ordered hash of every table's rows must match the original.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/core/log.js';
import { runBackup, runRestore, type Engine } from '../../src/engines/engine.js';
import type { ServiceArtifact } from '../../src/repo/types.js';
import { createTestRepo, type TestRepo } from '../helpers/repo.js';
import type { Repository } from '../../src/repo/types.js';
import { admin, dropDb, engineFor, fingerprint, leftovers, loadSakila, uniqueDb } from './helpers.js';

const source = uniqueDb('sakila');
const other = uniqueDb('sakila_other');
let repo: TestRepo;
/** A second handle on the same repository, opened after the backup was flushed: what a restore in another process sees. */
let reader: Repository | undefined;

function engine(db: string): Engine {
  return engineFor(db, { jobs: 3 });
}

async function backup(db: string): Promise<ServiceArtifact> {
  const session = await engine(db).openBackup({
    repo: repo.repo,
    log: silentLogger,
    progress: () => {},
    signal: new AbortController().signal,
    mode: 'live',
  });
  return runBackup(session);
}

async function restore(db: string, artifact: ServiceArtifact): Promise<void> {
  const session = await engine(db).openRestore(
    { repo: await readerRepo(), log: silentLogger, progress: () => {}, signal: new AbortController().signal, options: {} },
    artifact,
  );
  await runRestore(session);
}

async function readerRepo(): Promise<Repository> {
  if (!reader) {
    await repo.repo.flush();
    reader = await repo.reopen();
  }
  return reader;
}

beforeAll(async () => {
  repo = await createTestRepo();
  await loadSakila(source);
});

afterAll(async () => {
  await dropDb(source, other);
  await repo?.cleanup();
});

describe('mariadb engine on Sakila', () => {
  it('stops a backup cancelled mid-copy with an aborted error, and closes cleanly', async () => {
    const controller = new AbortController();
    const session = await engine(source).openBackup({
      repo: repo.repo,
      log: silentLogger,
      progress: () => controller.abort(),
      signal: controller.signal,
      mode: 'live',
    });
    const err = await runBackup(session).catch((e) => e);
    expect(err.code).toBe('aborted');
    // The connections were released (the server may take a moment to notice a dropped one).
    const conn = await admin(source);
    let open = -1;
    for (let i = 0; i < 50 && open !== 0; i++) {
      if (i > 0) await new Promise((res) => setTimeout(res, 100));
      const [[r]] = await conn.query<any[]>('SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE DB = ? AND ID <> CONNECTION_ID()', [source]);
      open = Number(r.n);
    }
    await conn.end();
    expect(open).toBe(0);
  });

  it('restores every object and row after damage, and into another database', async () => {
    const before = await fingerprint(source);
    expect(Object.keys(before.rows).length).toBe(16);
    const stored0 = repo.repo.stats().storedBytes;
    const artifact = await backup(source);
    expect(artifact.engine).toBe('mariadb');
    // Unchanged tables give the same bytes, so a second backup stores next to nothing.
    await repo.repo.flush();
    const stored1 = repo.repo.stats().storedBytes;
    expect(stored1 - stored0).toBeGreaterThan(100_000);
    const again = await backup(source);
    await repo.repo.flush();
    const stored2 = repo.repo.stats().storedBytes;
    const tableStreams = (a: ServiceArtifact) => Object.entries(a.streams).filter(([k]) => k.startsWith('table/')).sort(([x], [y]) => x.localeCompare(y));
    expect(tableStreams(again)).toEqual(tableStreams(artifact));
    expect(stored2 - stored1).toBeLessThan((stored1 - stored0) / 20);

    const conn = await admin(source);
    await conn.query('SET foreign_key_checks = 0');
    await conn.query('DELETE FROM payment WHERE payment_id % 3 = 0');
    await conn.query("UPDATE actor SET last_name = 'DAMAGED'");
    await conn.query('DROP TABLE film_text');
    await conn.query('DROP VIEW actor_info');
    await conn.query('DROP TRIGGER customer_create_date');
    await conn.query('DROP PROCEDURE film_in_stock');
    await conn.query('CREATE TABLE stray (id INT PRIMARY KEY)');
    await conn.end();
    const damaged = await fingerprint(source);
    expect(damaged).not.toEqual(before);

    await restore(source, artifact);
    expect(await fingerprint(source)).toEqual(before);

    await restore(other, artifact);
    expect(await fingerprint(other)).toEqual(before);

    // No shadow or old-table databases are left behind.
    for (const db of [source, other]) expect(await leftovers(db)).toEqual([]);
  });
});
