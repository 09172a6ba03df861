// The engine's own COPY paths (src/engines/postgresql/copy.ts) against the real server: byte-identical
// to what psql writes, rows that span many socket reads, a notice in the middle of the copy, errors on
// either side, and the connection still usable afterwards.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { copyFrom, copyTo } from '../../src/engines/postgresql/copy.js';
import { PG_BASE, TOOL_ENV, createDb, dropDb, uniqueDb } from './pg-fixture.js';

const db = uniqueDb('copy');

async function connect(): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: `${PG_BASE}/${db}` });
  c.on('error', () => {});
  await c.connect();
  return c;
}

/** Collects what copyTo writes, in small writes with backpressure (a slow consumer). */
function sink(): { out: Writable; bytes: () => Buffer } {
  const parts: Buffer[] = [];
  const out = new Writable({
    highWaterMark: 1024,
    write(chunk: Buffer, _e, cb) {
      parts.push(Buffer.from(chunk));
      setImmediate(cb);
    },
  });
  return { out, bytes: () => Buffer.concat(parts) };
}

async function finished(out: Writable): Promise<void> {
  out.end();
  await new Promise((resolve) => out.on('finish', resolve));
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

beforeAll(async () => {
  await createDb(db);
  const c = await connect();
  await c.query(`
    CREATE TABLE t (id int PRIMARY KEY, body text, raw bytea);
    INSERT INTO t SELECT i, repeat(E'tab\\there \\\\ new\\nline ü ', i % 7), decode(md5(i::text), 'hex') FROM generate_series(1, 20000) i;
    INSERT INTO t VALUES (0, repeat('x', 6 * 1024 * 1024), NULL), (-1, NULL, ''::bytea);
    CREATE FUNCTION noisy(i int) RETURNS int LANGUAGE plpgsql AS $$
      BEGIN IF i = 5000 THEN RAISE NOTICE 'half way'; END IF; RETURN i; END $$;`);
  await c.end();
});

afterAll(async () => {
  await dropDb(db);
});

describe('postgresql COPY over the engine connection', () => {
  it('copies out exactly the bytes psql writes, including a 6 MB row and slow consumers', async () => {
    const sql = 'COPY (SELECT * FROM t ORDER BY id) TO STDOUT';
    const viaPsql = execFileSync('psql', ['-X', '-q', '-d', db, '-c', sql], { env: TOOL_ENV, maxBuffer: 1 << 30 });
    const c = await connect();
    const { out, bytes } = sink();
    const rows = await copyTo(c, sql, out);
    await finished(out);
    expect(rows).toBe(20002);
    expect(bytes().length).toBe(viaPsql.length);
    expect(sha(bytes())).toBe(sha(viaPsql));
    expect((await c.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
    await c.end();
  });

  it('keeps every row when a notice arrives in the middle of the copy', async () => {
    const sql = 'COPY (SELECT noisy(i) FROM generate_series(1, 10000) i) TO STDOUT';
    const c = await connect();
    const notices: string[] = [];
    c.on('notice', (n) => notices.push(n.message ?? ''));
    const { out, bytes } = sink();
    expect(await copyTo(c, sql, out)).toBe(10000);
    await finished(out);
    const expected = Array.from({ length: 10000 }, (_, i) => `${i + 1}\n`).join('');
    expect(bytes().toString()).toBe(expected);
    expect(notices).toContain('half way');
    await c.end();
  });

  it('rejects with the server error and leaves the connection usable', async () => {
    const c = await connect();
    await expect(copyTo(c, 'COPY no_such_table TO STDOUT', sink().out)).rejects.toThrow(/no_such_table/);
    // An error raised after rows were sent
    await expect(copyTo(c, 'COPY (SELECT 10 / (5000 - i) FROM generate_series(1, 10000) i) TO STDOUT', sink().out)).rejects.toThrow(
      /division by zero/,
    );
    expect((await c.query('SELECT 2 AS two')).rows).toEqual([{ two: 2 }]);
    await c.end();
  });

  it('loads a stream in large pieces, round-tripping the copied bytes', async () => {
    const c = await connect();
    const { out, bytes } = sink();
    await copyTo(c, 'COPY t TO STDOUT', out);
    await finished(out);
    await c.query('CREATE TABLE t2 (LIKE t)');
    // Pieces that cut rows anywhere: the server does not care where CopyData messages split the text.
    const data = bytes();
    const pieces = [data.subarray(0, 3), data.subarray(3, 1 << 20), data.subarray(1 << 20)];
    expect(await copyFrom(c, 'COPY t2 FROM STDIN', Readable.from(pieces))).toBe(20002);
    const { rows } = await c.query(`SELECT (SELECT count(*) FROM (SELECT * FROM t EXCEPT SELECT * FROM t2) d)::int AS missing`);
    expect(rows[0].missing).toBe(0);
    await c.end();
  });

  it('a failing source aborts the load with its own error and loads nothing', async () => {
    const c = await connect();
    await c.query('CREATE TABLE t3 (id int)');
    async function* failing() {
      yield Buffer.from('1\n2\n');
      throw new Error('stored stream is damaged');
    }
    await expect(copyFrom(c, 'COPY t3 FROM STDIN', Readable.from(failing()))).rejects.toThrow(/stored stream is damaged/);
    expect((await c.query('SELECT count(*)::int AS n FROM t3')).rows[0].n).toBe(0);
    await c.end();
  });

  it('bad data: the server error, nothing loaded, the connection usable', async () => {
    const c = await connect();
    await c.query('CREATE TABLE t4 (id int)');
    await expect(copyFrom(c, 'COPY t4 FROM STDIN', Readable.from([Buffer.from('1\nnot a number\n3\n')]))).rejects.toThrow(
      /invalid input syntax for type integer/,
    );
    expect((await c.query('SELECT count(*)::int AS n FROM t4')).rows[0].n).toBe(0);
    await c.end();
  });
});
