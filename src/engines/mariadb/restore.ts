// Restore of one database, all or nothing:
//   stage   loads every table into a shadow database (bks_<target hash>_<id>) in parallel with
//           LOAD DATA LOCAL INFILE streamed from the repository, and test-creates views, routines
//           and triggers there so a bad definition fails before the target is touched;
//   commit  records "committing" in the shadow's journal (the point of no return), then moves the
//           target's old tables out and the new ones in with ONE RENAME TABLE statement, recreates
//           triggers, routines, views and events, and only then drops the old tables.
// Every step after the journal is idempotent, so a restore killed mid-commit is rolled forward by
// the next restore of that target (or recoverTarget()); one killed earlier leaves the target untouched
// and its shadow is dropped. Restores of one target are serialised by a server-side named lock.
import { createHash } from 'node:crypto';
import type { Readable, Writable } from 'node:stream';
import type { Connection as CbConnection } from 'mysql2';
import type { Connection, ResultSetHeader, RowDataPacket } from 'mysql2/promise';
import { BunkerError } from '../../core/errors.js';
import { newId } from '../../core/ids.js';
import type { Logger } from '../../core/log.js';
import type { RestoreContext, RestoreSession } from '../engine.js';
import type { ServiceArtifact, StreamRef } from '../../repo/types.js';
import { FORMAT, type SchemaDocument } from './backup.js';
import { connect, engineError, q, type Target } from './connection.js';
import { LOAD_DATA_FORMAT } from './row-format.js';
import { showCreateTable, type DatabaseSchema, type StoredObject, type TableInfo } from './schema.js';

const JOURNAL = '_bunker_restore_journal';
/** How long a restore waits for another's lock on the same database before reporting it. */
const LOCK_WAIT_SECONDS = 5;
/** Session for loading: errors instead of silent truncation, ids 0 kept as 0. */
const LOAD_SQL_MODE = 'NO_AUTO_VALUE_ON_ZERO,STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION';

type Row = RowDataPacket & Record<string, unknown>;

function prefixFor(database: string): string {
  return createHash('sha256').update(database).digest('hex').slice(0, 10);
}

async function rows(conn: Connection, sql: string, params: unknown[] = []): Promise<Row[]> {
  const [r] = await conn.query<Row[]>(sql, params);
  return r;
}

/** The slice of the backup that the commit needs; kept in the journal for roll-forward. */
interface Plan {
  target: string;
  oldDb: string;
  charset: string;
  collation: string;
  tables: string[];
  objects: StoredObject[];
}

export class MariadbRestore implements RestoreSession {
  private conn: Connection | undefined;
  private doc: SchemaDocument | undefined;
  private shadow = '';
  private oldDb = '';
  private committed = false;

  constructor(
    private readonly target: Target,
    private readonly jobs: number,
    private readonly ctx: RestoreContext,
    private readonly artifact: ServiceArtifact,
  ) {}

  async stage(): Promise<void> {
    const a = this.artifact;
    if (a.engine !== 'mariadb' || a.format > FORMAT || !a.streams.schema) {
      throw new BunkerError('not_restorable', `mariadb: this backup was written by engine ${a.engine} format ${a.format}, which this Bunker cannot restore`, {
        hint: 'Restore it with the Bunker version that wrote it, or pick a backup of a mariadb service.',
      });
    }
    const db = this.target.database;
    this.conn = await connect(this.target, { database: null, doing: `connecting to ${this.target.host}:${this.target.port}` });
    const conn = this.conn;
    try {
      // A restore killed a moment ago holds the lock until the server sees its connection closed:
      // wait a little for that before calling it a restore that is running.
      const [[lock]] = await conn.query<Row[]>('SELECT GET_LOCK(?, ?) AS got', [`bunker-restore:${db}`, LOCK_WAIT_SECONDS]);
      if (Number(lock?.got) !== 1) {
        throw new BunkerError('locked', `mariadb: another restore into ${db} is running`, { hint: 'Wait for it to finish, then try again.' });
      }
      await recoverLocked(conn, db, this.ctx.log);
      this.doc = JSON.parse((await this.ctx.repo.readBuffer(a.streams.schema)).toString('utf8')) as SchemaDocument;
      const schema = this.doc.schema;
      const id = newId().slice(0, 12);
      this.shadow = `bks_${prefixFor(db)}_${id}`;
      this.oldDb = `bko_${prefixFor(db)}_${id}`;
      await conn.query(`CREATE DATABASE ${q(this.shadow)} CHARACTER SET ${schema.charset} COLLATE ${schema.collation}`);
      await conn.query(`CREATE TABLE ${q(this.shadow)}.${q(JOURNAL)} (state VARCHAR(16) NOT NULL, plan LONGTEXT NOT NULL) ENGINE=InnoDB`);
      await conn.query(`INSERT INTO ${q(this.shadow)}.${q(JOURNAL)} VALUES ('staging', ?)`, [JSON.stringify(this.plan())]);
      await conn.query(`USE ${q(this.shadow)}`);
      await conn.query(`SET SESSION foreign_key_checks = 0, sql_mode = '${LOAD_SQL_MODE}'`);
      for (const t of schema.tables) await conn.query(t.create);
      for (const s of schema.sequences) {
        await conn.query(s.create);
        if (s.next !== undefined) await conn.query(`ALTER SEQUENCE ${q(s.name)} RESTART WITH ${BigInt(s.next).toString()}`);
      }
    } catch (err) {
      throw engineError(err, `preparing the shadow database for ${db}`);
    }
    await this.loadAll();
    try {
      // Trial run: the definitions must create cleanly before the target is touched.
      // Events are left out: with the scheduler on, one could fire in the shadow.
      await createObjects(conn, this.shadow, schema(this.doc).objects.filter((x) => x.kind !== 'event'));
      // Triggers would stop the tables from moving to another database.
      for (const o of schema(this.doc).objects.filter((x) => x.kind === 'trigger')) {
        await conn.query(`DROP TRIGGER IF EXISTS ${q(this.shadow)}.${q(o.name)}`);
      }
      await conn.query(`UPDATE ${q(this.shadow)}.${q(JOURNAL)} SET state = 'staged'`);
    } catch (err) {
      throw engineError(err, `checking the restored definitions of ${db}`);
    }
  }

  private plan(): Plan {
    const s = schema(this.doc);
    return {
      target: this.target.database,
      oldDb: this.oldDb,
      charset: s.charset,
      collation: s.collation,
      tables: [...s.tables.map((t) => t.name), ...s.sequences.map((x) => x.name)],
      objects: s.objects,
    };
  }

  /** Loads every table's stream into the shadow database, `jobs` tables at a time, largest first. */
  private async loadAll(): Promise<void> {
    const doc = this.doc!;
    const queue = doc.schema.tables
      .filter((t) => doc.data[t.name])
      .map((t) => ({ table: t, ref: this.artifact.streams[doc.data[t.name]!.stream], rows: doc.data[t.name]!.rows }))
      .sort((a, b) => (b.ref?.size ?? 0) - (a.ref?.size ?? 0));
    for (const item of queue) {
      if (!item.ref) throw new BunkerError('not_restorable', `mariadb: the backup lacks the data of table ${item.table.name}`);
    }
    const total = queue.reduce((s, x) => s + x.ref!.size, 0);
    let done = 0;
    const n = Math.max(1, Math.min(this.jobs, queue.length, await loadSlots(this.conn!)));
    const conns: Connection[] = [];
    try {
      for (let i = 0; i < n; i++) {
        const c = await connect(this.target, { database: this.shadow });
        conns.push(c);
        // unique_checks off (with foreign_key_checks off): MariaDB 10.6+ then loads an empty InnoDB
        // table through its bulk-insert path, without an undo record per row. The shadow tables are
        // empty and their rows come from one table with the same keys; a duplicate still fails the
        // load (at its commit, see engineError()) or the ALTER that adds a deferred unique index back. Restoring the sysbench set, alternated in one
        // process: 7.21-7.41 s against 7.54-8.25 s (4 pairs, all in its favour). It measured 1.6x
        // the server CPU when the secondary indexes were still loaded row by row.
        await c.query(`SET SESSION foreign_key_checks = 0, unique_checks = 0, sql_mode = '${LOAD_SQL_MODE}'`);
      }
      const results = await Promise.allSettled(
        conns.map(async (c) => {
          for (let item = queue.shift(); item; item = queue.shift()) {
            if (this.ctx.signal.aborted) throw new BunkerError('aborted', 'mariadb: restore cancelled');
            // Small tables are not worth the extra DDL; their indexes stay in the buffer pool anyway.
            const t0 = performance.now();
            const deferred = item.ref!.size >= DEFER_INDEXES_FROM ? await deferIndexes(c, item.table) : undefined;
            const t1 = performance.now();
            await this.loadTable(c, item.table, item.ref!, item.rows);
            const t2 = performance.now();
            if (deferred) await this.addIndexes(c, item.table, deferred);
            const s = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
            this.ctx.log.debug(
              `mariadb: ${item.table.name}: ${item.rows} rows loaded in ${s(t2 - t1)}` +
                (deferred ? `; indexes taken off in ${s(t1 - t0)}, built in ${s(performance.now() - t2)}` : ''),
            );
            done += item.ref!.size;
            this.ctx.progress({ bytes: done, totalBytes: total });
          }
        }),
      );
      const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) throw failed.reason;
    } finally {
      await Promise.all(conns.map((c) => c.end().catch(() => c.destroy())));
    }
  }

  /** Adds a loaded table's deferred secondary indexes in one ALTER (InnoDB builds each by sorting). */
  private async addIndexes(conn: Connection, table: TableInfo, d: DeferredIndexes): Promise<void> {
    try {
      await conn.query(`ALTER TABLE ${q(this.shadow)}.${q(table.name)} ${d.keys.map((k) => `ADD ${k}`).join(', ')}`);
      const now = await showCreateTable(conn, table.name, this.shadow);
      if (now !== d.expected) {
        throw new BunkerError('internal', `mariadb: table ${table.name} came out of its index build with another definition than it was created with`, {
          hint: 'Report this as a bug, with the SHOW CREATE TABLE of the table; the target is unchanged.',
        });
      }
      this.ctx.log.debug(`mariadb: ${table.name}: ${d.keys.length} secondary indexes built after loading`);
    } catch (err) {
      throw engineError(err, `building the indexes of table ${table.name}`);
    }
  }

  private async loadTable(conn: Connection, table: TableInfo, ref: StreamRef, expectedRows: number): Promise<void> {
    if (ref.size === 0) return;
    const targets: string[] = [];
    const sets: string[] = [];
    table.columns.forEach((c, i) => {
      if (c.kind === 'plain') return void targets.push(q(c.name));
      targets.push(`@c${i}`);
      const v = `@c${i}`;
      sets.push(`${q(c.name)} = ${c.kind === 'bit' ? `CAST(${v} AS UNSIGNED)` : c.kind === 'textual' ? `CONVERT(${v} USING ascii)` : v}`);
    });
    // Every version of a system-versioned table's rows, with their periods as they were: the server
    // takes given ROW START/END values only with system_versioning_insert_history on (MariaDB 10.11+).
    const history = table.history;
    if (history) targets.push(q(history.start), q(history.end));
    const sql =
      `LOAD DATA LOCAL INFILE 'bunker-stream' INTO TABLE ${q(this.shadow)}.${q(table.name)} ${LOAD_DATA_FORMAT} ` +
      `(${targets.join(', ')})${sets.length ? ` SET ${sets.join(', ')}` : ''}`;
    if (history) {
      try {
        await conn.query('SET SESSION system_versioning_insert_history = 1');
      } catch (err) {
        throw new BunkerError('engine', `mariadb: table ${table.name} is system-versioned, and this server cannot load its row history`, {
          cause: err,
          hint: 'Restore onto MariaDB 10.11 or later with secure_timestamp = NO (the default); the target is unchanged.',
        });
      }
    }
    try {
      const res = await loadLocal(conn, sql, () => this.ctx.repo.readStream(ref));
      if (res.warningStatus > 0) {
        const warnings = await rows(conn, 'SHOW WARNINGS LIMIT 3');
        throw new BunkerError('engine', `mariadb: loading ${table.name} gave warnings: ${warnings.map((w) => w.Message).join('; ')}`, {
          hint: 'The target server may differ from the source (version, sql_mode, character sets); the target is unchanged.',
        });
      }
      if (res.affectedRows !== expectedRows) {
        throw new BunkerError('corrupt', `mariadb: table ${table.name} loaded ${res.affectedRows} rows, the backup holds ${expectedRows}`, {
          hint: 'Run a repository check; the target is unchanged.',
        });
      }
    } catch (err) {
      throw engineError(err, `loading table ${table.name}`);
    } finally {
      if (history) await conn.query('SET SESSION system_versioning_insert_history = 0').catch(() => {});
    }
  }

  async commit(): Promise<void> {
    const conn = this.conn;
    if (!conn || !this.doc) throw new BunkerError('internal', 'mariadb: commit() before stage()');
    try {
      await conn.query(`UPDATE ${q(this.shadow)}.${q(JOURNAL)} SET state = 'committing'`);
      this.committed = true;
      await finishCommit(conn, this.shadow, this.plan());
    } catch (err) {
      throw engineError(err, `swapping the restored tables into ${this.target.database}`);
    }
    await this.release();
  }

  async abort(): Promise<void> {
    const conn = this.conn;
    if (!conn) return;
    try {
      if (this.committed) {
        // Past the point of no return: finish rather than leave a half-swapped target.
        await finishCommit(conn, this.shadow, this.plan());
      } else if (this.shadow) {
        await conn.query(`DROP DATABASE IF EXISTS ${q(this.shadow)}`);
        await conn.query(`DROP DATABASE IF EXISTS ${q(this.oldDb)}`);
      }
    } finally {
      await this.release();
    }
  }

  private async release(): Promise<void> {
    const conn = this.conn;
    this.conn = undefined;
    if (!conn) return;
    await conn.query('SELECT RELEASE_LOCK(?)', [`bunker-restore:${this.target.database}`]).catch(() => {});
    await conn.end().catch(() => conn.destroy());
  }
}

/**
 * How many tables to load at once, at most: LOAD DATA and the index builds after it are the
 * server's CPU work, and more of them than the server has cores only adds lock spinning and context
 * switches (sysbench set on 2 cores: 10.0–10.8 server CPU-seconds with 2 loads at a time, 11.3–12.0
 * with 4). MariaDB's thread_pool_size defaults to the server's CPU count (and a configured one is
 * sized to the cores as well); at least 2, so one table's DDL overlaps another's load. Servers
 * without it (MySQL) get no cap.
 */
async function loadSlots(conn: Connection): Promise<number> {
  try {
    const [[row]] = await conn.query<Row[]>('SELECT @@thread_pool_size AS n');
    const n = Number(row?.n);
    return Number.isInteger(n) && n > 0 ? Math.max(2, n) : Infinity;
  } catch {
    return Infinity;
  }
}

/** The slice of mysql2's connection that sending LOCAL INFILE data needs. */
interface InfileConnection {
  stream: Writable;
  sequenceId: number;
  _bumpSequenceId(n: number): void;
  once(event: 'error', listener: () => void): void;
  removeListener(event: 'error', listener: () => void): void;
}
/** The slice of mysql2's Query command (its state machine) whose LOCAL INFILE step loadLocal takes over. */
interface InfileQuery {
  _streamLocalInfile(connection: InfileConnection, name: string): unknown;
  _localStreamError?: Error;
  infileOk: unknown;
}

/** Longest MySQL protocol packet payload; one of exactly this length would continue into the next. */
const MAX_PAYLOAD = 0xffffff - 1;

/**
 * Runs a LOAD DATA LOCAL INFILE statement with `source` as the file. mysql2's own infile step copies
 * every chunk into a new buffer to put the 4-byte packet header in front: 400 MB of restore meant
 * 400 MB more of short-lived external memory, and the garbage collections it triggers. Here each
 * chunk goes to the socket as it is, after its own header.
 */
export function loadLocal(conn: Connection, sql: string, source: () => Readable): Promise<ResultSetHeader> {
  const raw = (conn as unknown as { connection: CbConnection }).connection;
  let stop = () => {};
  return new Promise((resolve, reject) => {
    const query = raw.query({ sql }, (err, res) => {
      stop(); // the server may answer before the end of the file (an error): send no more
      if (err) reject(err);
      else resolve(res as ResultSetHeader);
    }) as unknown as InfileQuery;
    query._streamLocalInfile = function (this: InfileQuery, connection) {
      const socket = connection.stream;
      const input = source();
      const send = (payload: Buffer): boolean => {
        const header = Buffer.allocUnsafe(4);
        header.writeUIntLE(payload.length, 0, 3);
        header[3] = connection.sequenceId;
        connection._bumpSequenceId(1);
        socket.cork();
        socket.write(header);
        const more = payload.length === 0 || socket.write(payload);
        socket.uncork();
        return more;
      };
      const onData = (chunk: Buffer) => {
        let more = true;
        for (let at = 0; at < chunk.length; at += MAX_PAYLOAD) more = send(chunk.subarray(at, at + MAX_PAYLOAD)) && more;
        if (!more) {
          input.pause();
          socket.once('drain', onDrain);
        }
      };
      const onDrain = () => input.resume();
      const onConnectionError = () => stop();
      stop = () => {
        input.removeListener('data', onData);
        socket.removeListener('drain', onDrain);
        connection.removeListener('error', onConnectionError);
        input.destroy();
      };
      const finish = (err?: Error) => {
        if (err) this._localStreamError = err; // mysql2 reports it once the server answers
        stop();
        send(Buffer.alloc(0)); // an empty packet ends the file
      };
      input.on('data', onData);
      input.once('end', () => finish());
      input.once('error', finish);
      connection.once('error', onConnectionError);
      return this.infileOk;
    };
  });
}

/** Secondary index definitions taken off a shadow table for its load, and its SHOW CREATE with them. */
interface DeferredIndexes {
  keys: string[];
  expected: string;
}

/** Tables with less row text than this keep their indexes while loading. */
const DEFER_INDEXES_FROM = 1 << 20;

/** A plain or unique secondary index line of SHOW CREATE TABLE; its name is group 1. */
const SECONDARY_KEY = /^ {2}(?:UNIQUE )?KEY (`(?:[^`]|``)+`) \(.*\)[^\n]*$/;

/**
 * Takes the secondary indexes off a freshly created (empty) shadow table in the connection's
 * database (its session as the table was created under), so its rows load into the
 * primary key alone and each index is then built by one sort instead of row-by-row inserts. Only
 * for InnoDB tables with a primary key (without one, the first unique key is the clustered index);
 * FULLTEXT, SPATIAL and hash-based unique keys stay. The round trip (drop, add back) is tried on the
 * empty table first and must give back the exact SHOW CREATE TABLE; any difference, or an index a
 * foreign key needs, leaves the table as created. Returns undefined when nothing is deferred.
 */
async function deferIndexes(conn: Connection, table: TableInfo): Promise<DeferredIndexes | undefined> {
  if (table.engine.toLowerCase() !== 'innodb') return undefined;
  const expected = await showCreateTable(conn, table.name);
  const lines = expected.split('\n');
  if (!lines.some((l) => l.startsWith('  PRIMARY KEY ('))) return undefined;
  const keys: string[] = [];
  const names: string[] = [];
  for (const line of lines) {
    const body = line.endsWith(',') ? line.slice(0, -1) : line;
    const m = SECONDARY_KEY.exec(body);
    if (!m || / USING HASH\b/.test(body)) continue;
    keys.push(body.trim());
    names.push(m[1]!);
  }
  if (keys.length === 0) return undefined;
  const name = q(table.name);
  const drop = `ALTER TABLE ${name} ${names.map((n) => `DROP KEY ${n}`).join(', ')}`;
  try {
    await conn.query(drop);
  } catch {
    return undefined; // e.g. an index a foreign key needs
  }
  const roundTrip = await conn
    .query(`ALTER TABLE ${name} ${keys.map((k) => `ADD ${k}`).join(', ')}`)
    .then(() => showCreateTable(conn, table.name))
    .catch(() => undefined);
  if (roundTrip !== expected) {
    await conn.query(`DROP TABLE ${name}`);
    await conn.query(table.create);
    return undefined;
  }
  await conn.query(drop);
  return { keys, expected };
}

function schema(doc: SchemaDocument | undefined): DatabaseSchema {
  if (!doc) throw new BunkerError('internal', 'mariadb: restore used before stage()');
  return doc.schema;
}

/** Sets the session a stored object was created under, creates it in `db`, and restores the session. */
async function createObject(conn: Connection, db: string, o: StoredObject): Promise<void> {
  await conn.query(`USE ${q(db)}`);
  const sets = [`character_set_client = ${o.charsetClient || 'utf8mb4'}`, `collation_connection = ${o.collationConnection || 'utf8mb4_general_ci'}`];
  if (o.sqlMode !== undefined) sets.push(`sql_mode = '${o.sqlMode.replace(/'/g, "''")}'`);
  if (o.timeZone) sets.push(`time_zone = '${o.timeZone.replace(/'/g, "''")}'`);
  await conn.query(`SET SESSION ${sets.join(', ')}`);
  try {
    const sql = o.kind === 'view' ? o.create.replace(/^CREATE /, 'CREATE OR REPLACE ') : o.create;
    await conn.query(sql);
  } finally {
    await conn.query("SET SESSION character_set_client = utf8mb4, collation_connection = utf8mb4_general_ci, sql_mode = DEFAULT, time_zone = '+00:00'");
  }
}

/**
 * Creates routines, triggers, views (in dependency order, found by retrying) and events in `db`.
 * Existing objects of the same name are replaced.
 */
async function createObjects(conn: Connection, db: string, objects: StoredObject[]): Promise<void> {
  for (const o of objects.filter((x) => x.kind === 'procedure' || x.kind === 'function')) {
    await conn.query(`DROP ${o.kind.toUpperCase()} IF EXISTS ${q(db)}.${q(o.name)}`);
    await createObject(conn, db, o);
  }
  for (const o of objects.filter((x) => x.kind === 'trigger')) {
    await conn.query(`DROP TRIGGER IF EXISTS ${q(db)}.${q(o.name)}`);
    await createObject(conn, db, o);
  }
  let views = objects.filter((x) => x.kind === 'view');
  while (views.length) {
    const failed: StoredObject[] = [];
    let lastError: unknown;
    for (const v of views) {
      try {
        await createObject(conn, db, v);
      } catch (err) {
        failed.push(v);
        lastError = err;
      }
    }
    if (failed.length === views.length) throw lastError;
    views = failed;
  }
  for (const o of objects.filter((x) => x.kind === 'event')) {
    await conn.query(`DROP EVENT IF EXISTS ${q(db)}.${q(o.name)}`);
    await createObject(conn, db, o);
  }
}

/** Everything after the point of no return; safe to run again after it was interrupted anywhere. */
async function finishCommit(conn: Connection, shadow: string, plan: Plan): Promise<void> {
  const target = plan.target;
  await conn.query('SET SESSION lock_wait_timeout = 120');
  await conn.query(`CREATE DATABASE IF NOT EXISTS ${q(target)} CHARACTER SET ${plan.charset} COLLATE ${plan.collation}`);
  await conn.query(`ALTER DATABASE ${q(target)} CHARACTER SET ${plan.charset} COLLATE ${plan.collation}`);
  const staged = await rows(
    conn,
    "SELECT TABLE_NAME AS n FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME <> ? AND TABLE_TYPE <> 'VIEW'",
    [shadow, JOURNAL],
  );
  // Staged tables left in the shadow mean the swap has not happened (a backup without tables has
  // nothing to stage: its swap only moves the old tables out, which is as idempotent).
  if (staged.length > 0 || plan.tables.length === 0) {
    // Not swapped yet. Triggers cannot move between databases, and views must not shadow the new
    // tables' names, so those go first; the journal says to finish, so a kill here rolls forward.
    const newNames = new Set(plan.tables);
    for (const t of await rows(conn, 'SELECT TRIGGER_NAME AS n FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = ?', [target])) {
      await conn.query(`DROP TRIGGER IF EXISTS ${q(target)}.${q(String(t.n))}`);
    }
    for (const v of await rows(conn, 'SELECT TABLE_NAME AS n FROM information_schema.VIEWS WHERE TABLE_SCHEMA = ?', [target])) {
      if (newNames.has(String(v.n))) await conn.query(`DROP VIEW IF EXISTS ${q(target)}.${q(String(v.n))}`);
    }
    const old = await rows(conn, "SELECT TABLE_NAME AS n FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_TYPE <> 'VIEW'", [target]);
    await conn.query(`CREATE DATABASE IF NOT EXISTS ${q(plan.oldDb)}`);
    const moves = [
      ...old.map((t) => `${q(target)}.${q(String(t.n))} TO ${q(plan.oldDb)}.${q(String(t.n))}`),
      ...staged.map((t) => `${q(shadow)}.${q(String(t.n))} TO ${q(target)}.${q(String(t.n))}`),
    ];
    if (moves.length) await conn.query(`RENAME TABLE ${moves.join(', ')}`);
  }
  // Objects of the old database that the backup does not have go; the backup's are (re)created.
  const keep = new Set(plan.objects.map((o) => `${o.kind}:${o.name}`));
  for (const t of await rows(conn, 'SELECT TRIGGER_NAME AS n FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = ?', [target])) {
    if (!keep.has(`trigger:${t.n}`)) await conn.query(`DROP TRIGGER IF EXISTS ${q(target)}.${q(String(t.n))}`);
  }
  for (const r of await rows(conn, 'SELECT ROUTINE_NAME AS n, ROUTINE_TYPE AS t FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = ?', [target])) {
    const kind = String(r.t).toLowerCase();
    if ((kind === 'procedure' || kind === 'function') && !keep.has(`${kind}:${r.n}`)) {
      await conn.query(`DROP ${kind.toUpperCase()} IF EXISTS ${q(target)}.${q(String(r.n))}`);
    }
  }
  for (const v of await rows(conn, 'SELECT TABLE_NAME AS n FROM information_schema.VIEWS WHERE TABLE_SCHEMA = ?', [target])) {
    if (!keep.has(`view:${v.n}`)) await conn.query(`DROP VIEW IF EXISTS ${q(target)}.${q(String(v.n))}`);
  }
  for (const e of await rows(conn, 'SELECT EVENT_NAME AS n FROM information_schema.EVENTS WHERE EVENT_SCHEMA = ?', [target])) {
    if (!keep.has(`event:${e.n}`)) await conn.query(`DROP EVENT IF EXISTS ${q(target)}.${q(String(e.n))}`);
  }
  await createObjects(conn, target, plan.objects);
  // Old tables go only now, after the new ones are in place.
  await conn.query(`DROP DATABASE IF EXISTS ${q(plan.oldDb)}`);
  await conn.query(`DROP DATABASE IF EXISTS ${q(shadow)}`);
}

/**
 * Finishes or undoes restores into `database` that were interrupted (process killed, connection
 * lost). The caller holds the target's restore lock, so no live restore owns these leftovers.
 */
async function recoverLocked(conn: Connection, database: string, log: Logger): Promise<void> {
  const prefix = prefixFor(database);
  const leftovers = await rows(conn, 'SELECT SCHEMA_NAME AS n FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE ? OR SCHEMA_NAME LIKE ?', [
    `bks\\_${prefix}\\_%`,
    `bko\\_${prefix}\\_%`,
  ]);
  for (const r of leftovers) {
    const name = String(r.n);
    if (!name.startsWith('bks_')) continue;
    const journal = await rows(conn, `SELECT state, plan FROM ${q(name)}.${q(JOURNAL)}`).catch(() => [] as Row[]);
    const entry = journal[0];
    if (entry && String(entry.state) === 'committing') {
      log.warn(`mariadb: finishing an interrupted restore into ${database}`);
      await finishCommit(conn, name, JSON.parse(String(entry.plan)) as Plan);
    } else {
      log.info(`mariadb: removing the shadow of an interrupted restore into ${database}`);
      await conn.query(`DROP DATABASE IF EXISTS ${q(name)}`);
    }
  }
  // Old-table holders whose shadow is gone: a kill after the swap, before the final drop.
  const still = await rows(conn, 'SELECT SCHEMA_NAME AS n FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE ?', [`bko\\_${prefix}\\_%`]);
  for (const r of still) await conn.query(`DROP DATABASE IF EXISTS ${q(String(r.n))}`);
}

/** Finishes or undoes any interrupted restore into the target database (also done by every restore's stage()). */
export async function recoverTarget(target: Target, log: Logger): Promise<void> {
  const conn = await connect(target, { database: null });
  try {
    const [[lock]] = await conn.query<Row[]>('SELECT GET_LOCK(?, 30) AS got', [`bunker-restore:${target.database}`]);
    if (Number(lock?.got) !== 1) throw new BunkerError('locked', `mariadb: a restore into ${target.database} is running`);
    await recoverLocked(conn, target.database, log);
  } catch (err) {
    throw engineError(err, `recovering interrupted restores into ${target.database}`);
  } finally {
    await conn.end().catch(() => conn.destroy());
  }
}
