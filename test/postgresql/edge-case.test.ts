// Every object family the issue lists survives backup, damage and restore unchanged; missing roles are
// named before anything is touched, and no_owner maps ownership to the connecting user.
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isBunkerError } from '../../src/core/errors.js';
import { createTestRepo, type TestRepo } from '../helpers/repo.js';
import { backup, createDb, dropDb, engineFor, fingerprint, restore, sql, uniqueDb } from './pg-fixture.js';
import type { ServiceArtifact } from '../../src/repo/types.js';

const EDGE_SQL = new URL('./edge-case.sql', import.meta.url);

describe('postgresql engine: edge cases', () => {
  const source = uniqueDb('edge');
  const copy = uniqueDb('edge_copy');
  let store: TestRepo;
  let artifact: ServiceArtifact;
  let before: Awaited<ReturnType<typeof fingerprint>>;

  beforeAll(async () => {
    store = await createTestRepo();
    await createDb(source);
    await sql(source, readFileSync(EDGE_SQL, 'utf8'));
    await sql(source, 'REFRESH MATERIALIZED VIEW order_totals_mat');
    await sql(
      source,
      `ALTER DATABASE ${source} SET work_mem = '7MB'; ALTER DATABASE ${source} SET search_path = "Ünïcode schema", "a ""b""", public;
       COMMENT ON DATABASE ${source} IS 'edge case ''db''';`,
    );
    before = await fingerprint(source);
    artifact = await backup(engineFor(source), store.repo);
    await store.repo.flush();
  });

  afterAll(async () => {
    await dropDb(source);
    await dropDb(copy);
    await store?.cleanup();
  });

  it('the fingerprint sees every family (guards the comparison itself)', () => {
    expect(Object.keys(before.largeObjects)).toEqual(['424242', '424243']);
    expect(before.sequences['public.lonely']).toBe('8/true');
    expect(before.sequences['public.untouched']).toBe('1/false');
    expect(before.tables['"Ünïcode schema"."Table With Spaces"']).toMatch(/^2:/);
    expect(before.tables['public.order_totals_mat']).toMatch(/^3:/);
    expect(before.schema).toContain('CREATE POLICY own_rows');
  });

  it('stores all-blank char(n) values as empty strings; other values, bpchar without a length, domains and arrays as they are', async () => {
    const ref = artifact.streams['table:["public","padded"]']!;
    const rows = (await store.repo.readBuffer(ref)).toString('utf8').split('\n');
    expect(rows.slice(0, 4)).toEqual([
      '1\ta  b  \tü  \t\tx  \tab  \t{"a  ","b c"}',
      '2\t\\N\tñé \t\t  \t\\N\t\\N',
      '3\ttab\\t  \t日本 \tfull5\t\tabcd\t{}',
      '4\t lead \t\tx    \t\\N\t    \t{"   "}',
    ]);
    // The load pads them back (the restore tests compare every row's text, padding included).
    expect(before.tables['public.padded']).toMatch(/^4:/);
  });

  it('restores a damaged database to exactly the backed-up state', async () => {
    await sql(source, 'DROP TABLE big_rows; DELETE FROM events WHERE kind = \'a\'; UPDATE no_pk SET a = NULL;');
    await sql(source, "SELECT lo_unlink(424242); SELECT setval('lonely', 500); DROP POLICY own_rows ON secrets");
    expect(await fingerprint(source)).not.toEqual(before);
    await restore(engineFor(source), store.repo, artifact);
    const after = await fingerprint(source);
    expect(after.schema).toEqual(before.schema);
    expect(after.tables).toEqual(before.tables);
    expect(after.sequences).toEqual(before.sequences);
    expect(after.largeObjects).toEqual(before.largeObjects);
    // The unlogged table stays unlogged, the deferred FK still defers, the trigger still fires.
    const { rows } = await sql(source, "SELECT relpersistence FROM pg_class WHERE relname = 'cache'");
    expect(rows[0].relpersistence).toBe('u');
    await sql(source, "BEGIN; INSERT INTO employees VALUES (11, 10, 'x'), (10, 1, 'y'); COMMIT;");
    await sql(source, 'INSERT INTO orders (employee, total) VALUES (1, 1)');
    const audit = await sql(source, "SELECT count(*)::int AS n FROM audit WHERE what = 'order 1001'");
    expect(audit.rows[0].n).toBe(1);
  });

  it('restores into another database with the same content, settings and comment', async () => {
    await restore(engineFor(copy), store.repo, artifact);
    expect(await fingerprint(copy)).toEqual(before);
    const props = (db: string) =>
      sql(
        'postgres',
        `SELECT s.setconfig AS settings, shobj_description(d.oid, 'pg_database') AS comment FROM pg_database d
         LEFT JOIN pg_db_role_setting s ON s.setdatabase = d.oid AND s.setrole = 0 WHERE d.datname = '${db}'`,
      ).then((r) => r.rows[0]);
    const expected = await props(source);
    expect(expected.settings).toEqual(['work_mem=7MB', 'search_path="Ünïcode schema", "a ""b""", public']);
    expect(expected.comment).toBe("edge case 'db'");
    expect(await props(copy)).toEqual(expected);
  });
});

describe('postgresql engine: roles', () => {
  const role = `bt_role_${process.pid}_${Date.now() % 100000}`;
  const source = uniqueDb('roles');
  const target = uniqueDb('roles_target');
  let store: TestRepo;

  afterAll(async () => {
    await dropDb(source);
    await dropDb(target);
    await store?.cleanup();
    await sql('postgres', `DROP ROLE IF EXISTS ${role}`);
  });

  it('names missing roles and leaves the target intact; no_owner restores as the connecting user', async () => {
    store = await createTestRepo();
    const repo = store.repo;
    await sql('postgres', `CREATE ROLE ${role}`);
    await createDb(source);
    await sql(source, `CREATE TABLE owned (a int); INSERT INTO owned VALUES (1), (2); ALTER TABLE owned OWNER TO ${role}; GRANT SELECT ON owned TO ${role};`);
    const artifact = await backup(engineFor(source), repo);
    expect(artifact.meta.roles).toContain(role);
    await dropDb(source);
    await sql('postgres', `DROP ROLE ${role}`);

    await createDb(target);
    await sql(target, 'CREATE TABLE keep (a int); INSERT INTO keep VALUES (42)');
    const err = await restore(engineFor(target), repo, artifact).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isBunkerError(err, 'engine')).toBe(true);
    expect((err as Error).message).toContain(role);
    expect((await sql(target, 'SELECT a FROM keep')).rows).toEqual([{ a: 42 }]);

    await restore(engineFor(target, { no_owner: true }), repo, artifact);
    const { rows } = await sql(target, "SELECT tableowner, (SELECT count(*)::int FROM owned) AS n FROM pg_tables WHERE tablename = 'owned'");
    expect(rows).toEqual([{ tableowner: 'postgres', n: 2 }]);
    expect((await sql(target, "SELECT to_regclass('keep') IS NULL AS gone")).rows[0].gone).toBe(true);
  });
});
