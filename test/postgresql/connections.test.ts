// Connections and loads: a backup copies every table over `jobs` connections that share the pinned
// snapshot, a restore loads them over `jobs` connections (not one per table), and a whole table is
// loaded with FREEZE (its pages end up all-frozen, so nothing rewrites them for hint bits later).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestRepo, type TestRepo } from '../helpers/repo.js';
import { backup, createDb, dropDb, engineFor, fingerprint, PG_BASE, restore, sql, uniqueDb } from './pg-fixture.js';
import { openSessions, parsePgUrl } from '../../src/engines/postgresql/connection.js';

const TABLES = 12;
const JOBS = 2;

describe('postgresql engine: connections and loads', () => {
  const source = uniqueDb('load');
  const target = uniqueDb('load_target');
  let store: TestRepo;

  beforeAll(async () => {
    store = await createTestRepo();
    await createDb(source);
    for (let i = 0; i < TABLES; i++) {
      await sql(source, `CREATE TABLE t${i} (id int PRIMARY KEY, v text); INSERT INTO t${i} SELECT g, md5(g::text) FROM generate_series(1, ${1000 * (i + 1)}) g`);
    }
  });

  afterAll(async () => {
    await dropDb(source);
    await dropDb(target);
    await store?.cleanup();
  });

  it('openSessions leaves no connection open when one of them fails its setup', async () => {
    // The first session to take the advisory lock succeeds; the others fail (division by zero).
    const setup = 'SELECT CASE WHEN pg_try_advisory_lock(4242) THEN 1 ELSE 1 / 0 END';
    await expect(openSessions(parsePgUrl(`${PG_BASE}/${source}`), 3, setup)).rejects.toThrow(/division by zero/);
    // A closed connection's backend may take a moment to leave pg_stat_activity.
    const others = async () => (await sql(source, 'SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()')).rows[0].n as number;
    for (let i = 0; i < 40 && (await others()) > 0; i++) await new Promise((r) => setTimeout(r, 50));
    expect(await others()).toBe(0);
  });

  it('backs up every table over at most `jobs` connections', async () => {
    const sessions = async () => (await sql(source, 'SELECT sessions::int AS n FROM pg_stat_database WHERE datname = current_database()')).rows[0].n as number;
    const before = await sessions();
    const artifact = await backup(engineFor(source, { jobs: JOBS }), store.repo);
    expect(Object.keys(artifact.streams).filter((k) => k.startsWith('table:'))).toHaveLength(TABLES);
    // The pin's connection, the copiers, pg_dump for the schema, and the second count's own session.
    const opened = (await sessions()) - before;
    expect(opened).toBeGreaterThanOrEqual(1 + JOBS);
    expect(opened).toBeLessThanOrEqual(1 + JOBS + 1 + 1);
  });

  it('loads whole tables frozen, over at most `jobs` connections, with the same rows', async () => {
    const artifact = await backup(engineFor(source), store.repo);
    await store.repo.flush();
    await restore(engineFor(target, { jobs: JOBS }), store.repo, artifact);
    // Sessions ever opened to the restored database (the shadow, renamed): the loaders, pg_restore for
    // pre-data, pg_restore -j for post-data (its leader connects before and after its `jobs` workers),
    // and this query's. One connection per table would be at least TABLES.
    const { rows } = await sql(target, 'SELECT sessions::int AS n FROM pg_stat_database WHERE datname = current_database()');
    expect(rows[0].n).toBeGreaterThanOrEqual(JOBS);
    expect(rows[0].n).toBeLessThanOrEqual(JOBS + 1 + (2 + JOBS) + 1);
    expect(rows[0].n).toBeLessThan(TABLES);

    expect(await fingerprint(target)).toEqual(await fingerprint(source));

    await sql(target, 'CREATE EXTENSION IF NOT EXISTS pg_visibility');
    for (let i = 0; i < TABLES; i++) {
      const { rows } = await sql(target, `SELECT all_frozen::int AS frozen, (pg_relation_size('t${i}') / 8192)::int AS pages FROM pg_visibility_map_summary('t${i}')`);
      expect(rows[0].frozen, `t${i}`).toBe(rows[0].pages);
    }
  });
});
