// `databases: all` against the shared server: the backup takes every database (other engineers' too,
// which come and go meanwhile), so the assertions are about our own throwaway databases and roles:
// they are in the artifact, each as of the pin, and after damage (a dropped database, changed rows,
// dropped roles) a restore of them brings back their exact contents and the missing roles, with their
// password hashes, while a role that exists is left as it is. Other databases are never restored here.
import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isBunkerError } from '../../src/core/errors.js';
import { runRestore, type Engine } from '../../src/engines/engine.js';
import { ROLES_STREAM, type ClusterMeta } from '../../src/engines/postgresql/cluster.js';
import { sideNames } from '../../src/engines/postgresql/restore.js';
import type { ServiceArtifact } from '../../src/repo/types.js';
import { createTestRepo, type TestRepo } from '../helpers/repo.js';
import { PG_BASE, createDb, dropDb, engineFor, fingerprint, sql, testLogger, uniqueDb, withClient, type Fingerprint } from './pg-fixture.js';

const EDGE_SQL = new URL('./edge-case.sql', import.meta.url);

describe('postgresql engine: databases: all', () => {
  const tag = randomBytes(4).toString('hex');
  const dbA = uniqueDb('all_a');
  const dbB = uniqueDb('all_b');
  const dbC = `bt_pg_all "c" ${tag}`; // a name that needs quoting everywhere
  const mine = [dbA, dbB, dbC];
  const role = `bt_pg_role_${tag}`;
  const group = `bt_pg_group_${tag}`;
  const keep = `bt_pg_keep_${tag}`;
  const password = `pw-${randomBytes(6).toString('hex')}`;
  const q = (s: string) => `"${s.replace(/"/g, '""')}"`;
  let store: TestRepo;
  let artifact: ServiceArtifact;
  let before: Record<string, Fingerprint>;
  let hash: string;
  const logs: string[] = [];

  const allEngine = (url = `${PG_BASE}/postgres`): Engine =>
    engineFor('postgres', { url, databases: 'all' }, testLogger(logs));
  const ctx = () => ({ repo: store.repo, log: testLogger(logs), progress: () => {}, signal: new AbortController().signal });

  /**
   * The backup reads every database on the server. Another engineer's test may drop or swap its own
   * database while ours runs, which fails our backup with that database's name; only then, retry.
   */
  const backupAll = async (afterPin?: () => Promise<void>, beforeRetry?: () => Promise<void>): Promise<ServiceArtifact> => {
    for (let attempt = 1; ; attempt++) {
      const session = await allEngine().openBackup({ ...ctx(), mode: 'live' });
      try {
        await session.prepare();
        await session.pin();
        await afterPin?.();
        return await session.stream();
      } catch (err) {
        const msg = (err as Error).message;
        const foreign = /database (\S+):/.exec(msg)?.[1];
        if (attempt >= 4 || !foreign || mine.some((d) => msg.includes(`database ${d}:`))) throw err;
        logs.push(`retrying the backup: ${msg}`);
        await beforeRetry?.();
      } finally {
        await session.close();
      }
    }
  };

  beforeAll(async () => {
    store = await createTestRepo();
    await sql('postgres', `CREATE ROLE ${group} NOLOGIN; CREATE ROLE ${keep} NOLOGIN CONNECTION LIMIT 3`);
    await sql(
      'postgres',
      `CREATE ROLE ${role} LOGIN PASSWORD '${password}' CONNECTION LIMIT 7 VALID UNTIL '2099-01-02 03:04:05+00' IN ROLE ${group};
       ALTER ROLE ${role} SET work_mem = '9MB'; COMMENT ON ROLE ${role} IS 'test role ''${tag}'''`,
    );
    hash = (await sql('postgres', `SELECT rolpassword FROM pg_authid WHERE rolname = '${role}'`)).rows[0].rolpassword;
    for (const db of mine) await createDb(db);
    await sql(
      dbA,
      `CREATE TABLE owned (id serial PRIMARY KEY, v text); ALTER TABLE owned OWNER TO ${role};
       INSERT INTO owned (v) SELECT md5(g::text) FROM generate_series(1, 3000) g;
       CREATE TABLE plain (id int PRIMARY KEY); INSERT INTO plain SELECT generate_series(1, 100)`,
    );
    await sql(dbB, readFileSync(EDGE_SQL, 'utf8'));
    await sql(dbB, `REFRESH MATERIALIZED VIEW order_totals_mat; GRANT SELECT ON events TO ${role}, ${keep}`);
    await sql(dbC, `CREATE TABLE "x y" (a text); INSERT INTO "x y" VALUES ('c1'), (''), (NULL); SELECT lo_from_bytea(777001, 'blob')`);
    before = {};
    for (const db of mine) before[db] = await fingerprint(db);
    // Rows written after the pin, in two databases, must be in neither backed-up copy.
    artifact = await backupAll(
      async () => {
        await sql(dbA, `INSERT INTO plain VALUES (1000)`);
        await sql(dbC, `INSERT INTO "x y" VALUES ('late')`);
      },
      // A retry pins again: what the failed attempt wrote after its pin goes first, so the rows are
      // again written after the pin (and the insert does not collide with its earlier self).
      async () => {
        await sql(dbA, `DELETE FROM plain WHERE id = 1000`);
        await sql(dbC, `DELETE FROM "x y" WHERE a = 'late'`);
      },
    );
    await store.repo.flush();
  }, 600_000);

  afterAll(async () => {
    for (const db of mine) await dropDb(db).catch(() => {});
    await sql('postgres', `DROP ROLE IF EXISTS ${role}; DROP ROLE IF EXISTS ${keep}; DROP ROLE IF EXISTS ${group}`).catch(() => {});
    await store?.cleanup();
  });

  it('holds every non-template database, each as its own set of streams, and the roles without secrets in meta', () => {
    const meta = artifact.meta as unknown as ClusterMeta;
    const names = meta.databases.map((d) => d.name);
    for (const db of mine) expect(names).toContain(db);
    expect(names).toContain('postgres');
    expect(names).not.toContain('template0');
    expect(names).not.toContain('template1');
    expect(names.some((n) => /^bunker_(shadow|old)_/.test(n))).toBe(false);
    expect(meta.roles).toEqual(expect.arrayContaining([role, group, keep]));
    expect(artifact.streams[ROLES_STREAM]).toBeDefined();
    expect(Object.keys(artifact.streams).filter((k) => k.startsWith(`db:${JSON.stringify(dbC)}:`)).length).toBeGreaterThan(1);
    expect(JSON.stringify(artifact)).not.toContain(hash);
    expect(logs.join('\n')).not.toContain(hash);
    expect(logs.join('\n')).not.toContain(password);
  });

  it('restores the damaged databases and missing roles; existing roles are left as they are', async () => {
    await sql(dbA, `UPDATE owned SET v = 'changed' WHERE id < 100; DROP TABLE plain`);
    await dropDb(dbC);
    await sql(dbB, `DELETE FROM events; DROP OWNED BY ${role}, ${keep}`);
    await dropDb(dbA); // the role owns objects there; it goes with them
    await sql('postgres', `DROP ROLE ${role}; DROP ROLE ${group}; ALTER ROLE ${keep} CONNECTION LIMIT 9`);

    // Through another connection database: the artifact names no server or maintenance database.
    const session = await allEngine(`${PG_BASE}/template1`).openRestore({ ...ctx(), options: { paths: mine } }, artifact);
    await runRestore(session);

    for (const db of mine) {
      const after = await fingerprint(db);
      expect(after.schema, db).toEqual(before[db]!.schema);
      expect(after.tables, db).toEqual(before[db]!.tables);
      expect(after.sequences, db).toEqual(before[db]!.sequences);
      expect(after.largeObjects, db).toEqual(before[db]!.largeObjects);
    }
    const { rows } = await sql(
      'postgres',
      `SELECT a.rolname, a.rolpassword, a.rolconnlimit, a.rolcanlogin, a.rolvaliduntil = '2099-01-02 03:04:05+00' AS until,
              shobj_description(a.oid, 'pg_authid') AS comment,
              (SELECT setconfig FROM pg_db_role_setting WHERE setrole = a.oid AND setdatabase = 0) AS settings,
              pg_has_role(a.rolname, '${group}', 'MEMBER') AS member
       FROM pg_authid a WHERE a.rolname IN ('${role}', '${keep}') ORDER BY a.rolname DESC`,
    );
    expect(rows[0]).toEqual({
      rolname: role,
      rolpassword: hash,
      rolconnlimit: 7,
      rolcanlogin: true,
      until: true,
      comment: `test role '${tag}'`,
      settings: ['work_mem=9MB'],
      member: true,
    });
    expect(rows[1]).toMatchObject({ rolname: keep, rolconnlimit: 9 });
    expect((await sql(dbA, `SELECT pg_get_userbyid(relowner) AS o FROM pg_class WHERE relname = 'owned'`)).rows[0].o).toBe(role);
    expect((await sql(dbB, `SELECT has_table_privilege('${role}', 'events', 'SELECT') AS ok`)).rows[0].ok).toBe(true);
    expect(logs.join('\n')).not.toContain(hash);
    expect(logs.join('\n')).not.toContain(password);
    expect(logs.join('\n')).toMatch(new RegExp(`created roles [^\\n]*${group}`));
  }, 600_000);

  it('probes the size of every database together', async () => {
    const probe = await allEngine().probe();
    const { rows } = await withClient('postgres', (c) =>
      c.query('SELECT sum(pg_database_size(datname))::bigint AS n FROM pg_database WHERE datname = ANY($1)', [mine]),
    );
    expect(probe.version).toMatch(/^PostgreSQL \d+/);
    expect(probe.sizeEstimate).toBeGreaterThan(Number(rows[0].n));
  });

  it('refuses unknown database names and a single-database target, naming what is wrong', async () => {
    const err = await allEngine()
      .openRestore({ ...ctx(), options: { paths: [dbA, 'bt_pg_no_such_db'] } }, artifact)
      .catch((e: unknown) => e);
    expect(isBunkerError(err, 'usage')).toBe(true);
    expect((err as Error).message).toContain('bt_pg_no_such_db');
    const single = await engineFor(dbA)
      .openRestore({ ...ctx(), options: {} }, artifact)
      .catch((e: unknown) => e);
    expect(isBunkerError(single, 'target_mismatch')).toBe(true);
  });

  it('a failing database is named in the error and the others stay untouched', async () => {
    const fpA = await fingerprint(dbA);
    const fpC = await fingerprint(dbC);
    // Another restore into dbA holds its lock; a restore of dbC and dbA stages dbC first, then fails on dbA.
    const holder = await allEngine().openRestore({ ...ctx(), options: { paths: [dbA] } }, artifact);
    await holder.stage();
    try {
      const session = await allEngine().openRestore({ ...ctx(), options: { paths: [dbC, dbA] } }, artifact);
      const err = await runRestore(session).catch((e: unknown) => e);
      expect(isBunkerError(err, 'locked')).toBe(true);
      expect((err as Error).message).toMatch(new RegExp(`^database ${dbA}: `));
    } finally {
      await holder.abort();
    }
    expect(await fingerprint(dbA)).toEqual(fpA);
    expect(await fingerprint(dbC)).toEqual(fpC);
    for (const db of [dbA, dbC]) {
      const { shadow, old } = sideNames(db);
      const { rowCount } = await sql('postgres', `SELECT 1 FROM pg_database WHERE datname IN ('${shadow}', '${old}')`);
      expect(rowCount, db).toBe(0);
    }
  }, 300_000);
});
