// Shared by the MariaDB tests: unique scratch databases, the Sakila loader, and a fingerprint of a
// database (SHOW CREATE of every object plus an ordered hash of every table's rows) to compare.
import { z } from 'zod';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createConnection, type Connection, type RowDataPacket } from 'mysql2/promise';
import { silentLogger } from '../../src/core/log.js';
import type { Engine } from '../../src/engines/engine.js';
import { mariadbEngine } from '../../src/engines/mariadb/index.js';

export const SERVER = { host: '127.0.0.1', port: 3306, user: 'root', password: '' };

export function uniqueDb(label: string): string {
  return `mdbt_${label}_${randomBytes(4).toString('hex')}`;
}

export function urlFor(db: string): string {
  return `mysql://root@127.0.0.1:3306/${db}`;
}

/** The mariadb engine for database `db` on the test server (plus config such as `jobs`), logging nothing. */
export function engineFor(db: string, config: Record<string, unknown> = {}): Engine {
  return mariadbEngine.create('db', mariadbEngine.configSchema(z).parse({ url: urlFor(db), ...config }), {
    configDir: '/tmp',
    stateDir: '/tmp',
    log: silentLogger,
  });
}

export async function admin(database?: string): Promise<Connection> {
  const conn = await createConnection({ ...SERVER, ...(database ? { database } : {}), multipleStatements: true, charset: 'UTF8MB4_GENERAL_CI' });
  await conn.query("SET SESSION time_zone = '+00:00'");
  return conn;
}

export async function dropDb(...names: string[]): Promise<void> {
  const conn = await admin();
  try {
    for (const n of names) await conn.query(`DROP DATABASE IF EXISTS \`${n}\``);
  } finally {
    await conn.end();
  }
}

/** Runs a SQL script with the mariadb client (it understands DELIMITER). */
export async function runScript(sql: string, database?: string): Promise<void> {
  const { spawnSync } = await import('node:child_process');
  const args = ['-h', SERVER.host, '-P', String(SERVER.port), '-u', SERVER.user, '--default-character-set=utf8mb4'];
  if (database) args.push(database);
  const r = spawnSync('mariadb', args, { input: sql, encoding: 'utf8', maxBuffer: 1 << 28 });
  if (r.status !== 0) throw new Error(`mariadb client failed: ${r.stderr}`);
}

/** Loads the shared Sakila dataset into `db` (the scripts name `sakila`; rewritten here). */
export async function loadSakila(db: string): Promise<void> {
  const dir = new URL('../../../shared/datasets/sakila-mariadb/', import.meta.url);
  const fix = (s: string) =>
    s
      .replace(/DROP SCHEMA IF EXISTS sakila;/g, `DROP SCHEMA IF EXISTS ${db};`)
      .replace(/CREATE SCHEMA sakila;/g, `CREATE SCHEMA ${db};`)
      .replace(/^USE sakila;/gm, `USE ${db};`)
      .replace(/\bsakila\./g, `${db}.`);
  await runScript(fix(readFileSync(new URL('schema.sql', dir), 'utf8')));
  await runScript(fix(readFileSync(new URL('data.sql', dir), 'utf8')));
}

type Row = RowDataPacket & Record<string, unknown>;

export interface Fingerprint {
  database: string;
  objects: Record<string, string>;
  rows: Record<string, string>;
}

/** SHOW CREATE of every object (without the database name and creation times) and row hashes. */
export async function fingerprint(db: string): Promise<Fingerprint> {
  const conn = await admin(db);
  try {
    const objects: Record<string, string> = {};
    const rows: Record<string, string> = {};
    const [[dbRow]] = await conn.query<Row[]>(
      'SELECT DEFAULT_CHARACTER_SET_NAME AS cs, DEFAULT_COLLATION_NAME AS co FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?',
      [db],
    );
    const database = `${dbRow?.cs} ${dbRow?.co}`;
    const [tables] = await conn.query<Row[]>('SELECT TABLE_NAME AS n, TABLE_TYPE AS t FROM information_schema.TABLES WHERE TABLE_SCHEMA = ?', [db]);
    for (const t of tables) {
      const name = String(t.n);
      if (t.t === 'VIEW') {
        const [[r]] = await conn.query<Row[]>(`SHOW CREATE VIEW \`${name}\``);
        objects[`view ${name}`] = `${r?.['Create View']} ${r?.character_set_client} ${r?.collation_connection}`;
        continue;
      }
      if (t.t === 'SEQUENCE') {
        const [[r]] = await conn.query<Row[]>(`SHOW CREATE SEQUENCE \`${name}\``);
        const [[s]] = await conn.query<Row[]>(`SELECT next_not_cached_value AS n FROM \`${name}\``);
        objects[`sequence ${name}`] = `${r?.['Create Table']} next=${s?.n}`;
        continue;
      }
      const [[r]] = await conn.query<Row[]>(`SHOW CREATE TABLE \`${name}\``);
      objects[`table ${name}`] = String(r?.['Create Table']);
      rows[name] = await hashRows(conn, db, name);
    }
    const [triggers] = await conn.query<Row[]>('SELECT TRIGGER_NAME AS n FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = ?', [db]);
    for (const t of triggers) {
      const [[r]] = await conn.query<Row[]>(`SHOW CREATE TRIGGER \`${t.n}\``);
      objects[`trigger ${t.n}`] = [r?.['SQL Original Statement'], r?.sql_mode, r?.character_set_client, r?.collation_connection, r?.['Database Collation']].join(' | ');
    }
    const [routines] = await conn.query<Row[]>('SELECT ROUTINE_NAME AS n, ROUTINE_TYPE AS t FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = ?', [db]);
    for (const rt of routines) {
      const [[r]] = await conn.query<Row[]>(`SHOW CREATE ${rt.t} \`${rt.n}\``);
      const key = rt.t === 'FUNCTION' ? 'Create Function' : 'Create Procedure';
      objects[`${rt.t} ${rt.n}`] = [r?.[key], r?.sql_mode, r?.character_set_client, r?.collation_connection, r?.['Database Collation']].join(' | ');
    }
    const [events] = await conn.query<Row[]>('SELECT EVENT_NAME AS n FROM information_schema.EVENTS WHERE EVENT_SCHEMA = ?', [db]);
    for (const e of events) {
      const [[r]] = await conn.query<Row[]>(`SHOW CREATE EVENT \`${e.n}\``);
      objects[`event ${e.n}`] = [r?.['Create Event'], r?.sql_mode, r?.time_zone, r?.character_set_client, r?.collation_connection].join(' | ');
    }
    return { database, objects, rows };
  } finally {
    await conn.end();
  }
}

/** sha256 over every row in a total order (all columns), every value as raw bytes with its length. */
export async function hashRows(conn: Connection, db: string, table: string): Promise<string> {
  const [cols] = await conn.query<Row[]>(
    'SELECT COLUMN_NAME AS n, DATA_TYPE AS t FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION',
    [db, table],
  );
  // Sort on the raw bytes of every column so the order never depends on a collation or a tie.
  const exprs = cols.map((c) => {
    const n = '`' + String(c.n).replace(/`/g, '``') + '`';
    return ['geometry', 'point', 'polygon', 'linestring'].includes(String(c.t)) ? `ST_AsBinary(${n})` : n;
  });
  const order = exprs.map((e) => `CAST(${e} AS BINARY)`).join(', ');
  await conn.query('SET SESSION character_set_results = binary');
  const [result] = await conn.query<RowDataPacket[]>({
    sql: `SELECT ${exprs.join(', ')} FROM \`${table}\` ORDER BY ${order}`,
    rowsAsArray: true,
    typeCast: (field: { buffer(): Buffer | null }) => field.buffer(),
  });
  await conn.query('SET SESSION character_set_results = utf8mb4');
  const h = createHash('sha256');
  let count = 0;
  for (const row of result as unknown as (Buffer | null)[][]) {
    count++;
    for (const v of row) {
      if (v === null) h.update('N');
      else h.update(`${v.length}:`).update(v);
    }
    h.update('\n');
  }
  return `${count}:${h.digest('hex')}`;
}

/** Shadow (bks_) and old-table (bko_) databases the engine left for restores into `db`. */
export async function leftovers(db: string): Promise<string[]> {
  const prefix = createHash('sha256').update(db).digest('hex').slice(0, 10);
  const conn = await admin();
  try {
    const [r] = await conn.query<Row[]>('SELECT SCHEMA_NAME AS n FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE ? OR SCHEMA_NAME LIKE ?', [
      `bks\\_${prefix}\\_%`,
      `bko\\_${prefix}\\_%`,
    ]);
    return r.map((x) => String(x.n));
  } finally {
    await conn.end();
  }
}
