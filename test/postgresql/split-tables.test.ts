// The split path end to end. On this machine's server (shared_buffers 128 MB) no table is ever split
// (format.ts, partsFor), but servers with larger shared_buffers split their big tables and backups
// taken that way must restore; here the engine's split decision is forced so the path runs on a real
// server: ctid-range copies, parallel loads without FREEZE, the same rows back.
import { afterAll, describe, expect, it, vi } from 'vitest';
import { createTestRepo, type TestRepo } from '../helpers/repo.js';
import { PART_PAGES, partsFor } from '../../src/engines/postgresql/format.js';
import { backup, createDb, dropDb, engineFor, fingerprint, restore, sql, uniqueDb, withClient } from './pg-fixture.js';

vi.mock('../../src/engines/postgresql/format.js', async (importOriginal) => {
  const original = await importOriginal<typeof import('../../src/engines/postgresql/format.js')>();
  // Three ranges for any table of more than a few pages; the rest as the engine decides.
  return { ...original, partsFor: (t: { pages: number; columns: string }) => (t.columns && t.pages > 8 ? 3 : 1) };
});

describe('postgresql split tables', () => {
  const source = uniqueDb('split');
  const copy = uniqueDb('split_copy');
  let store: TestRepo;

  afterAll(async () => {
    await dropDb(source);
    await dropDb(copy);
    await store?.cleanup();
  });

  it('backs up a table as ctid ranges and restores every row once', async () => {
    store = await createTestRepo();
    await createDb(source);
    await sql(
      source,
      `CREATE TABLE big (id int PRIMARY KEY, note text, c char(6));
       INSERT INTO big SELECT g, repeat(md5(g::text), 4), CASE WHEN g % 3 = 0 THEN '' ELSE 'x' END FROM generate_series(1, 30000) g;
       CREATE TABLE small (id int); INSERT INTO small VALUES (1), (2);`,
    );
    const artifact = await backup(engineFor(source), store.repo);
    await store.repo.flush();
    const tables = artifact.meta.tables as { name: string; parts: number }[];
    expect(tables.find((t) => t.name === 'big')!.parts).toBe(3);
    expect(tables.find((t) => t.name === 'small')!.parts).toBe(1);
    await restore(engineFor(copy), store.repo, artifact);
    expect(await fingerprint(copy)).toEqual(await fingerprint(source));
    const { rows } = await sql(copy, "SELECT count(*)::int AS n, count(*) FILTER (WHERE c = '      ')::int AS blank FROM big");
    expect(rows[0]).toEqual({ n: 30000, blank: 10000 });
  }, 120_000);
});

describe('postgresql split tables under writes', () => {
  const source = uniqueDb('split_busy');
  const copy = uniqueDb('split_busy_copy');
  let store: TestRepo;

  afterAll(async () => {
    await dropDb(source);
    await dropDb(copy);
    await store?.cleanup();
  });

  it('copies each row once while updates move rows to other pages of the ranges', async () => {
    store = await createTestRepo();
    await createDb(source);
    // Transfers keep the balances' sum at zero; every UPDATE writes a new row version, usually on
    // another page, so a row could be seen in two ranges or in none if the ranges were not one snapshot.
    await sql(
      source,
      `CREATE TABLE account (id int PRIMARY KEY, balance bigint NOT NULL, pad text);
       INSERT INTO account SELECT g, 0, repeat('x', 300) FROM generate_series(1, 20000) g;`,
    );
    let writing = true;
    let transfers = 0;
    const writer = withClient(source, async (c) => {
      while (writing) {
        const from = 1 + Math.floor(Math.random() * 20000);
        const to = 1 + Math.floor(Math.random() * 20000);
        await c.query(
          `BEGIN; UPDATE account SET balance = balance - 5 WHERE id = ${from}; UPDATE account SET balance = balance + 5 WHERE id = ${to}; COMMIT`,
        );
        transfers++;
      }
    });
    try {
      while (transfers < 50) await new Promise((r) => setTimeout(r, 10));
      const artifact = await backup(engineFor(source), store.repo);
      await store.repo.flush();
      expect((artifact.meta.tables as { name: string; parts: number }[]).find((t) => t.name === 'account')!.parts).toBe(3);
      const during = transfers;
      while (transfers < during + 50) await new Promise((r) => setTimeout(r, 10));
      writing = false;
      await writer;
      await restore(engineFor(copy), store.repo, artifact);
    } finally {
      writing = false;
      await writer.catch(() => {});
    }
    const { rows } = await sql(copy, 'SELECT count(*)::int AS n, count(DISTINCT id)::int AS ids, sum(balance)::int AS total, count(*) FILTER (WHERE balance <> 0)::int AS moved FROM account');
    expect(rows[0].n).toBe(20000);
    expect(rows[0].ids).toBe(20000);
    expect(rows[0].total).toBe(0);
    expect(rows[0].moved).toBeGreaterThan(0); // the copy holds transfers made before the snapshot
  }, 120_000);
});

describe('postgresql split decision', () => {
  it('splits a big table only where a plain scan would not read it through a ring of buffers', async () => {
    const { partsFor: real } = await vi.importActual<typeof import('../../src/engines/postgresql/format.js')>('../../src/engines/postgresql/format.js');
    const table = { pages: 3 * PART_PAGES, columns: 'a' };
    const gib = (n: number) => (n * 1024 ** 3) / 8192;
    // 128 MB of shared_buffers (the default): one plain scan.
    expect(real(table, 150000, gib(0.125))).toBe(1);
    // 16 GB: the table fits a quarter of it, so it is copied in ranges.
    expect(real(table, 150000, gib(16))).toBe(3);
    // No TID range scans before PostgreSQL 14.
    expect(real(table, 130000, gib(16))).toBe(1);
    // Small tables stay whole.
    expect(real({ pages: PART_PAGES, columns: 'a' }, 150000, gib(16))).toBe(1);
    expect(partsFor).not.toBe(real);
  });
});
