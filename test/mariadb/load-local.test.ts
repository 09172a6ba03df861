// loadLocal() sends LOAD DATA LOCAL INFILE data itself (no copy per chunk): rows must arrive whole
// whatever the chunk sizes, including chunks past the protocol's 16 MiB packet limit, and a source
// that fails half-way must fail the statement and leave the connection usable.
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Connection, RowDataPacket } from 'mysql2/promise';
import { connect, parseUrl } from '../../src/engines/mariadb/connection.js';
import { loadLocal } from '../../src/engines/mariadb/restore.js';
import { LOAD_DATA_FORMAT } from '../../src/engines/mariadb/row-format.js';
import { admin, dropDb, uniqueDb, urlFor } from './helpers.js';

const db = uniqueDb('infile');
let conn: Connection;

const load = (source: () => Readable) => loadLocal(conn, `LOAD DATA LOCAL INFILE 'x' INTO TABLE t ${LOAD_DATA_FORMAT} (id, v)`, source);

beforeAll(async () => {
  const a = await admin();
  await a.query(`CREATE DATABASE ${db}`);
  await a.query(`CREATE TABLE ${db}.t (id INT PRIMARY KEY, v VARCHAR(200) NOT NULL) ENGINE=InnoDB`);
  await a.end();
  conn = await connect(parseUrl(urlFor(db)));
});

afterAll(async () => {
  await conn?.end();
  await dropDb(db);
});

describe('loadLocal', () => {
  it('loads rows split across chunks of every size, including one larger than a protocol packet', async () => {
    await conn.query('TRUNCATE TABLE t');
    const rows: string[] = [];
    for (let i = 1; i <= 300_000; i++) rows.push(`${i}\tvalue-${i}-${'x'.repeat(i % 97)}\n`);
    const text = Buffer.from(rows.join(''));
    expect(text.length).toBeGreaterThan(17 << 20);
    // Cuts mid-row and mid-value; the last piece alone is over 16 MiB.
    const pieces = [text.subarray(0, 1), text.subarray(1, 70_001), text.subarray(70_001, text.length - (17 << 20)), text.subarray(text.length - (17 << 20))];
    const res = await load(() => Readable.from(pieces));
    expect(res.affectedRows).toBe(300_000);
    const [[sum]] = await conn.query<RowDataPacket[]>('SELECT COUNT(*) AS n, SUM(LENGTH(v)) AS len, MAX(id) AS top FROM t');
    expect(Number(sum!.n)).toBe(300_000);
    expect(Number(sum!.top)).toBe(300_000);
    expect(Number(sum!.len)).toBe(rows.reduce((s, r) => s + r.length - r.indexOf('\t') - 2, 0));
  });

  it('reports an error that stops the server mid-file, and the connection keeps working', async () => {
    await conn.query('TRUNCATE TABLE t');
    const rows = Buffer.from(Array.from({ length: 400_000 }, (_, i) => `${i + 1}\tvalue-${i}\n`).join(''));
    const pieces = Array.from({ length: 64 }, (_, i) => rows.subarray((i * rows.length) / 64, ((i + 1) * rows.length) / 64));
    await conn.query('SET SESSION max_statement_time = 0.01');
    try {
      await expect(load(() => Readable.from(pieces))).rejects.toThrow(/max_statement_time/);
    } finally {
      await conn.query('SET SESSION max_statement_time = 0');
    }
    const res = await load(() => Readable.from([Buffer.from('1\tone\n')]));
    expect(res.affectedRows).toBe(1);
  });

  it('fails with the source error when the source fails half-way, and the connection keeps working', async () => {
    await conn.query('TRUNCATE TABLE t');
    const source = () =>
      Readable.from(
        (async function* () {
          yield Buffer.from('1\tone\n2\ttwo\n');
          throw new Error('repository read failed');
        })(),
      );
    await expect(load(source)).rejects.toThrow('repository read failed');
    const [[after]] = await conn.query<RowDataPacket[]>('SELECT 1 + 1 AS two');
    expect(Number(after!.two)).toBe(2);
    // The next load on the same connection works.
    const res = await load(() => Readable.from([Buffer.from('3\tthree\n')]));
    expect(res.affectedRows).toBe(1);
  });
});
