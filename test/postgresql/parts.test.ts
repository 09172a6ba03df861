// ctid ranges of a split table (format.ts): on the real server, the ranges of a table hold every row
// exactly once, and they are equal in pages, so parallel copies (and the restore's loads) end together.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { partQuery, partStart } from '../../src/engines/postgresql/format.js';
import { PG_BASE, createDb, dropDb, uniqueDb } from './pg-fixture.js';

const db = uniqueDb('parts');
let client: pg.Client;

beforeAll(async () => {
  await createDb(db);
  client = new pg.Client({ connectionString: `${PG_BASE}/${db}` });
  client.on('error', () => {});
  await client.connect();
  await client.query('CREATE TABLE t (id int, pad text); INSERT INTO t SELECT g, repeat(\'x\', 200) FROM generate_series(1, 20000) g');
});

afterAll(async () => {
  await client?.end().catch(() => {});
  await dropDb(db);
});

describe('postgresql ctid ranges', () => {
  it('partition the rows exactly, in ranges of equal size', async () => {
    const { rows } = await client.query("SELECT pg_relation_size('t') / 8192 AS pages");
    const pages = Number(rows[0].pages);
    expect(pages).toBeGreaterThan(100);
    for (const parts of [2, 3, 7]) {
      const t = { qualified: 'public.t', columns: 'id, pad', pages, parts };
      const ids: number[] = [];
      const sizes: number[] = [];
      for (let part = 0; part < parts; part++) {
        const r = await client.query(`SELECT id FROM ${partQuery(t, part)} s`);
        ids.push(...r.rows.map((x) => x.id as number));
        sizes.push(partStart(t, part + 1) - partStart(t, part));
      }
      expect(ids.length).toBe(20000);
      expect(new Set(ids).size).toBe(20000);
      expect(partStart(t, 0)).toBe(0);
      expect(partStart(t, parts)).toBe(pages);
      expect(Math.max(...sizes) - Math.min(...sizes)).toBeLessThanOrEqual(1);
    }
  });

  it('leaves the last range open-ended, so rows added after the catalog was read are copied too', async () => {
    const { rows } = await client.query("SELECT pg_relation_size('t') / 8192 AS pages");
    const t = { qualified: 'public.t', columns: 'id, pad', pages: Number(rows[0].pages), parts: 2 };
    await client.query("INSERT INTO t SELECT g, repeat('y', 200) FROM generate_series(20001, 25000) g");
    let n = 0;
    for (let part = 0; part < 2; part++) n += Number((await client.query(`SELECT count(*) AS n FROM ${partQuery(t, part)} s`)).rows[0].n);
    expect(n).toBe(25000);
  });

  it('reads through the select list when there is one, whole or in ranges', async () => {
    await client.query("CREATE TABLE padded (id int, c char(8)); INSERT INTO padded SELECT g, '' FROM generate_series(1, 10) g");
    const whole = { qualified: 'public.padded', columns: 'id, c', select: "id, CASE WHEN pg_catalog.length(c) = 0 THEN ''::pg_catalog.bpchar ELSE c END AS c", pages: 1, parts: 1 };
    expect((await client.query(`SELECT DISTINCT c FROM ${partQuery(whole, 0)} s`)).rows).toEqual([{ c: '' }]);
    const split = { ...whole, parts: 2 };
    const rows = [0, 1].map((part) => client.query(`SELECT c FROM ${partQuery(split, part)} s`));
    const all = (await Promise.all(rows)).flatMap((r) => r.rows);
    expect(all).toHaveLength(10);
    expect(new Set(all.map((r) => r.c))).toEqual(new Set(['']));
    // Without a select list, char(n) comes out padded.
    expect((await client.query(`SELECT DISTINCT c FROM ${partQuery({ ...whole, select: undefined, parts: 2 }, 1)} s`)).rows).toEqual([{ c: '        ' }]);
  });
});
