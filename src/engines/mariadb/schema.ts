// Reads every object of one database: tables (with the columns a dump must name), sequences, views,
// triggers, routines and events, each with the session settings it must be recreated under.
import type { Connection, RowDataPacket } from 'mysql2/promise';
import { q } from './connection.js';

/**
 * How a column travels in the data stream. Most load as the bytes they were sent as; BIT goes as a
 * number, geometry as its internal bytes, and UUID/INET types as text that must be read as text
 * (a binary string would be taken as their 16-byte form).
 */
export type ColumnKind = 'plain' | 'bit' | 'geometry' | 'textual';

export interface ColumnInfo {
  name: string;
  kind: ColumnKind;
}

export interface TableInfo {
  name: string;
  engine: string;
  /** SHOW CREATE TABLE, with AUTO_INCREMENT set to its value at the consistent point. */
  create: string;
  /** Stored (non-generated) columns in table order: what the data stream holds. */
  columns: ColumnInfo[];
  /** InnoDB: read in the consistent snapshot. Others are read under a table read lock taken at the pin. */
  transactional: boolean;
  /** Whether row data is dumped at all (BLACKHOLE, MERGE, FEDERATED and the like hold none of their own). */
  hasData: boolean;
  /** Columns of the primary key, for a stable row order (InnoDB scans in that order anyway). */
  primaryKey: string[];
  /** Estimated bytes, for scheduling the largest tables first. */
  sizeEstimate: number;
  systemVersioned: boolean;
  /**
   * System-versioned tables: the period columns (ROW_START/ROW_END when implicit) that the data stream
   * carries after `columns`, with every row version (FOR SYSTEM_TIME ALL), not only current rows.
   * Absent in backups made before history was kept: those hold current rows only.
   */
  history?: { start: string; end: string };
}

export interface SequenceInfo {
  name: string;
  create: string;
  /** next_not_cached_value at the consistent point: the next value a restored sequence hands out. */
  next?: string;
}

/** A view, trigger, routine or event: its CREATE statement and the session it was created under. */
export interface StoredObject {
  kind: 'view' | 'trigger' | 'procedure' | 'function' | 'event';
  name: string;
  create: string;
  sqlMode?: string;
  charsetClient: string;
  collationConnection: string;
  /** Events only: the time zone the schedule is read in. */
  timeZone?: string;
  /** Triggers only: the table they are attached to. */
  table?: string;
}

export interface DatabaseSchema {
  charset: string;
  collation: string;
  tables: TableInfo[];
  sequences: SequenceInfo[];
  /** In creation order: triggers by table, event, timing and action order. */
  objects: StoredObject[];
}

const TRANSACTIONAL_ENGINES = new Set(['innodb']);
const NO_DATA_ENGINES = new Set(['blackhole', 'mrg_myisam', 'federated', 'federatedx', 'connect', 'spider']);

type Row = RowDataPacket & Record<string, unknown>;

async function rows(conn: Connection, sql: string, params: unknown[] = []): Promise<Row[]> {
  const [r] = await conn.query<Row[]>(sql, params);
  return r;
}

function str(v: unknown): string {
  if (v === null || v === undefined) return '';
  return Buffer.isBuffer(v) ? v.toString('utf8') : String(v);
}

/** Column list and kinds of one table, as the data stream carries them. */
export async function readColumns(
  conn: Connection,
  db: string,
  table: string,
): Promise<{ columns: ColumnInfo[]; primaryKey: string[]; period?: { start: string; end: string } }> {
  const cols = await rows(
    conn,
    `SELECT COLUMN_NAME AS name, DATA_TYPE AS type, IS_GENERATED AS gen, GENERATION_EXPRESSION AS expr, COLUMN_KEY AS ckey
       FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION`,
    [db, table],
  );
  const pk = await rows(
    conn,
    `SELECT COLUMN_NAME AS name FROM information_schema.STATISTICS
      WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND INDEX_NAME = 'PRIMARY' ORDER BY SEQ_IN_INDEX`,
    [db, table],
  );
  const geometry = new Set(['geometry', 'point', 'linestring', 'polygon', 'multipoint', 'multilinestring', 'multipolygon', 'geometrycollection']);
  // Period columns declared in the table (GENERATED ALWAYS AS ROW START/END); implicit ones are not listed.
  const periodColumn = (expr: string) => cols.find((c) => str(c.gen).toUpperCase() === 'ALWAYS' && str(c.expr).toUpperCase() === expr);
  const start = periodColumn('ROW START');
  const end = periodColumn('ROW END');
  return {
    ...(start && end ? { period: { start: str(start.name), end: str(end.name) } } : {}),
    columns: cols
      .filter((c) => str(c.gen).toUpperCase() !== 'ALWAYS')
      .map((c) => {
        const type = str(c.type).toLowerCase();
        const kind: ColumnKind =
          type === 'bit' ? 'bit' : geometry.has(type) ? 'geometry' : ['uuid', 'inet6', 'inet4'].includes(type) ? 'textual' : 'plain';
        return { name: str(c.name), kind };
      }),
    primaryKey: pk.map((r) => str(r.name)),
  };
}

export async function showCreateTable(conn: Connection, table: string, db?: string): Promise<string> {
  const r = await rows(conn, `SHOW CREATE TABLE ${db ? `${q(db)}.` : ''}${q(table)}`);
  return str(r[0]?.['Create Table']);
}

/** Reads the whole schema of `db` (the connection's current database). */
export async function readSchema(conn: Connection, db: string): Promise<DatabaseSchema> {
  const [dbRow] = await rows(
    conn,
    'SELECT DEFAULT_CHARACTER_SET_NAME AS cs, DEFAULT_COLLATION_NAME AS coll FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?',
    [db],
  );
  const tableRows = await rows(
    conn,
    `SELECT TABLE_NAME AS name, TABLE_TYPE AS type, ENGINE AS engine, COALESCE(DATA_LENGTH, 0) AS size
       FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? ORDER BY TABLE_NAME`,
    [db],
  );
  const tables: TableInfo[] = [];
  const sequences: SequenceInfo[] = [];
  for (const t of tableRows) {
    const name = str(t.name);
    const type = str(t.type);
    if (type === 'SEQUENCE') {
      const r = await rows(conn, `SHOW CREATE SEQUENCE ${q(name)}`);
      sequences.push({ name, create: str(r[0]?.['Create Table']) });
      continue;
    }
    if (type !== 'BASE TABLE' && type !== 'SYSTEM VERSIONED') continue;
    const engine = str(t.engine);
    const { columns, primaryKey } = await readColumns(conn, db, name);
    tables.push({
      name,
      engine,
      create: await showCreateTable(conn, name),
      columns,
      transactional: TRANSACTIONAL_ENGINES.has(engine.toLowerCase()),
      hasData: !NO_DATA_ENGINES.has(engine.toLowerCase()),
      primaryKey,
      sizeEstimate: Number(t.size) || 0,
      systemVersioned: type === 'SYSTEM VERSIONED',
    });
  }

  const objects: StoredObject[] = [];
  const views = await rows(conn, `SELECT TABLE_NAME AS name FROM information_schema.VIEWS WHERE TABLE_SCHEMA = ? ORDER BY TABLE_NAME`, [db]);
  for (const v of views) {
    const r = (await rows(conn, `SHOW CREATE VIEW ${q(str(v.name))}`))[0];
    objects.push({
      kind: 'view',
      name: str(v.name),
      create: str(r?.['Create View']),
      charsetClient: str(r?.character_set_client),
      collationConnection: str(r?.collation_connection),
    });
  }
  const routines = await rows(
    conn,
    `SELECT ROUTINE_NAME AS name, ROUTINE_TYPE AS type FROM information_schema.ROUTINES
      WHERE ROUTINE_SCHEMA = ? AND ROUTINE_TYPE IN ('FUNCTION', 'PROCEDURE') ORDER BY ROUTINE_TYPE, ROUTINE_NAME`,
    [db],
  );
  for (const rt of routines) {
    const kind = str(rt.type) === 'FUNCTION' ? 'function' : 'procedure';
    const r = (await rows(conn, `SHOW CREATE ${kind.toUpperCase()} ${q(str(rt.name))}`))[0];
    objects.push({
      kind,
      name: str(rt.name),
      create: str(r?.[kind === 'function' ? 'Create Function' : 'Create Procedure']),
      sqlMode: str(r?.sql_mode),
      charsetClient: str(r?.character_set_client),
      collationConnection: str(r?.collation_connection),
    });
  }
  const triggers = await rows(
    conn,
    `SELECT TRIGGER_NAME AS name, EVENT_OBJECT_TABLE AS tbl FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = ?
      ORDER BY EVENT_OBJECT_TABLE, EVENT_MANIPULATION, ACTION_TIMING, ACTION_ORDER`,
    [db],
  );
  for (const tr of triggers) {
    const r = (await rows(conn, `SHOW CREATE TRIGGER ${q(str(tr.name))}`))[0];
    objects.push({
      kind: 'trigger',
      name: str(tr.name),
      table: str(tr.tbl),
      create: unqualifiedTrigger(str(r?.['SQL Original Statement'])),
      sqlMode: str(r?.sql_mode),
      charsetClient: str(r?.character_set_client),
      collationConnection: str(r?.collation_connection),
    });
  }
  const events = await rows(conn, `SELECT EVENT_NAME AS name FROM information_schema.EVENTS WHERE EVENT_SCHEMA = ? ORDER BY EVENT_NAME`, [db]);
  for (const ev of events) {
    const r = (await rows(conn, `SHOW CREATE EVENT ${q(str(ev.name))}`))[0];
    objects.push({
      kind: 'event',
      name: str(ev.name),
      create: str(r?.['Create Event']),
      sqlMode: str(r?.sql_mode),
      timeZone: str(r?.time_zone),
      charsetClient: str(r?.character_set_client),
      collationConnection: str(r?.collation_connection),
    });
  }
  return { charset: str(dbRow?.cs), collation: str(dbRow?.coll), tables, sequences, objects };
}

/**
 * The trigger's CREATE statement as the user typed it (SHOW CREATE TRIGGER keeps that text), minus any
 * database qualifier on the trigger's and the table's names: `CREATE TRIGGER app.t ... ON app.orders`
 * replayed into the shadow database would otherwise create the trigger in the live target. Only the
 * header up to FOR EACH ROW is read; the body is left as written.
 */
export function unqualifiedTrigger(statement: string): string {
  // Tokens of the header: `quoted` identifiers, 'strings', words, and single characters; comments skipped.
  const token = /\s+|\/\*[\s\S]*?\*\/|--[^\n]*|#[^\n]*|`(?:[^`]|``)*`|'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.|"")*"|[A-Za-z0-9_$\u0080-\uffff]+|./gy;
  const tokens: { text: string; at: number }[] = [];
  let m: RegExpExecArray | null;
  while ((m = token.exec(statement)) !== null) {
    const text = m[0];
    if (/^(\s|\/\*|--|#)/.test(text)) continue;
    tokens.push({ text, at: m.index });
    const n = tokens.length;
    if (n >= 3 && /^FOR$/i.test(tokens[n - 3]!.text) && /^EACH$/i.test(tokens[n - 2]!.text) && /^ROW$/i.test(text)) break;
  }
  const word = (i: number, w: string) => tokens[i] !== undefined && tokens[i]!.text.toUpperCase() === w;
  // Cuts [from, to) out of the statement, later cuts first so earlier offsets stay valid.
  const cuts: [number, number][] = [];
  const dropQualifier = (i: number) => {
    if (tokens[i + 1]?.text === '.' && tokens[i + 2]) cuts.push([tokens[i]!.at, tokens[i + 2]!.at]);
  };
  const trigger = tokens.findIndex((t) => t.text.toUpperCase() === 'TRIGGER');
  if (trigger < 0) return statement;
  let name = trigger + 1;
  if (word(name, 'IF') && word(name + 1, 'NOT') && word(name + 2, 'EXISTS')) name += 3;
  dropQualifier(name);
  const on = tokens.findIndex((t, i) => i > name && t.text.toUpperCase() === 'ON');
  if (on >= 0) dropQualifier(on + 1);
  let out = statement;
  for (const [from, to] of cuts.reverse()) out = out.slice(0, from) + out.slice(to);
  return out;
}

/** Replaces (or removes) the AUTO_INCREMENT= table option in a CREATE TABLE statement. */
export function withAutoIncrement(create: string, value: string | null): string {
  // SHOW CREATE TABLE puts the table options on the line that closes the column list: ") ENGINE=...".
  return create.replace(/\n\) ENGINE=[^\n]*/, (line) => {
    let out = line.replace(/ AUTO_INCREMENT=\d+/, '');
    if (value !== null && value !== '') out = out.replace(/^(\n\) ENGINE=\S+)/, `$1 AUTO_INCREMENT=${value}`);
    return out;
  });
}
