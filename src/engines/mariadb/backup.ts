// One backup of one database, the way mydumper takes its consistent point: a brief global read
// lock, a consistent-snapshot transaction on every dump connection, a table read lock on the
// non-transactional tables, unlock. Then each table is copied, in parallel, into its own stream.
import type { Connection as CbConnection } from 'mysql2';
import type { Connection, RowDataPacket } from 'mysql2/promise';
import { BunkerError } from '../../core/errors.js';
import type { BackupContext, BackupSession } from '../engine.js';
import type { ServiceArtifact, StreamRef } from '../../repo/types.js';
import { connect, engineError, q, type Target } from './connection.js';
import { readResultSet } from './result-reader.js';
import { RowEncoder } from './row-format.js';
import { readColumns, readSchema, showCreateTable, withAutoIncrement, type DatabaseSchema, type TableInfo } from './schema.js';

/** 2: system-versioned tables carry every row version (TableInfo.history). 1 otherwise. */
export const FORMAT = 2;

/** What the schema stream holds (JSON): the database's objects, as of the consistent point. */
export interface SchemaDocument {
  database: string;
  server: string;
  schema: DatabaseSchema;
  /** Per table: the stream key and row count. */
  data: Record<string, { stream: string; rows: number }>;
}

type Row = RowDataPacket & Record<string, unknown>;

export class MariadbBackup implements BackupSession {
  private ctrl: Connection | undefined;
  /** Reads non-transactional tables under LOCK TABLES ... READ, taken while the global lock is held. */
  private locker: Connection | undefined;
  private dumpers: Connection[] = [];
  private schema: DatabaseSchema | undefined;
  private server = '';
  private autoIncrement = new Map<string, string | null>();
  private pinMs = 0;
  private closed = false;

  constructor(
    private readonly target: Target,
    private readonly jobs: number,
    private readonly ctx: BackupContext,
  ) {}

  async prepare(): Promise<void> {
    const t = this.target;
    this.ctrl = await connect(t, { doing: `connecting to ${t.host}:${t.port}/${t.database}` });
    try {
      const [[v]] = await this.ctrl.query<Row[]>('SELECT VERSION() AS v');
      this.server = String(v?.v ?? '');
      this.schema = await readSchema(this.ctrl, t.database);
      // Closes idle table handles now, so the FLUSH under the lock in pin() has little left to do.
      await this.ctrl.query('FLUSH NO_WRITE_TO_BINLOG TABLES');
      // A long-running query makes FLUSH TABLES WITH READ LOCK wait, and writers queue behind it:
      // give up after a while rather than stall the application.
      await this.ctrl.query('SET SESSION lock_wait_timeout = 30');
    } catch (err) {
      throw engineError(err, `reading the schema of ${t.database}`);
    }
    const schema = this.schema;
    const transactional = schema.tables.filter((x) => x.transactional && x.hasData);
    const n = Math.max(1, Math.min(this.jobs, transactional.length));
    this.dumpers = await Promise.all(Array.from({ length: n }, () => connect(t, { rows: true })));
    try {
      for (const d of this.dumpers) {
        // Raw bytes in each column's own character set; no conversion on the way out.
        await d.query('SET SESSION character_set_results = binary');
        await d.query('SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ');
      }
      if (schema.tables.some((x) => !x.transactional && x.hasData)) {
        this.locker = await connect(t, { rows: true });
        await this.locker.query('SET SESSION character_set_results = binary');
      }
    } catch (err) {
      throw engineError(err, 'opening the dump connections');
    }
  }

  async pin(): Promise<void> {
    const ctrl = this.ctrl;
    const schema = this.schema;
    if (!ctrl || !schema) throw new BunkerError('internal', 'mariadb: pin() before prepare()');
    const started = performance.now();
    try {
      await ctrl.query('FLUSH TABLES WITH READ LOCK');
      try {
        await Promise.all(this.dumpers.map((d) => d.query('START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY')));
        const nonTx = schema.tables.filter((x) => !x.transactional && x.hasData);
        if (this.locker && nonTx.length) {
          await this.locker.query(`LOCK TABLES ${nonTx.map((x) => `${q(x.name)} READ`).join(', ')}`);
        }
        // AUTO_INCREMENT and sequence positions are not versioned: read them while nothing can write.
        const [ai] = await ctrl.query<Row[]>(
          `SELECT TABLE_NAME AS name, AUTO_INCREMENT AS ai, TABLE_TYPE AS type FROM information_schema.TABLES WHERE TABLE_SCHEMA = ?`,
          [this.target.database],
        );
        const now = new Set<string>();
        for (const r of ai) {
          now.add(String(r.name));
          this.autoIncrement.set(String(r.name), r.ai === null || r.ai === undefined ? null : String(r.ai));
        }
        const before = [...schema.tables.map((x) => x.name), ...schema.sequences.map((s) => s.name)];
        if (before.some((name) => !now.has(name)) || ai.filter((r) => r.type !== 'VIEW').length !== before.length) {
          throw new BunkerError('engine', `mariadb: tables of ${this.target.database} were created or dropped while the backup started`, {
            hint: 'Run the backup again; avoid schema changes while it starts.',
          });
        }
        for (const s of schema.sequences) {
          const [[row]] = await ctrl.query<Row[]>(`SELECT next_not_cached_value AS n FROM ${q(s.name)}`);
          s.next = String(row?.n);
        }
      } finally {
        await ctrl.query('UNLOCK TABLES');
      }
    } catch (err) {
      throw engineError(err, `taking the consistent point of ${this.target.database}`);
    }
    this.pinMs = performance.now() - started;
    this.ctx.log.debug(`mariadb: consistent point of ${this.target.database} in ${this.pinMs.toFixed(1)} ms`);
  }

  async stream(): Promise<ServiceArtifact> {
    const schema = this.schema;
    if (!schema || !this.ctrl) throw new BunkerError('internal', 'mariadb: stream() before prepare()');
    const streams: Record<string, StreamRef> = {};
    const data: SchemaDocument['data'] = {};
    const warnings: string[] = [];
    let total = 0;
    const onBytes = (n: number) => {
      total += n;
      this.ctx.progress({ bytes: total });
    };

    const dumpOne = async (conn: Connection, table: TableInfo, index: number) => {
      if (this.ctx.signal.aborted) throw new BunkerError('aborted', 'mariadb: backup cancelled');
      try {
        // Opening the table first takes its metadata lock for the rest of the transaction, so the
        // definition read next is the one the rows belong to.
        await conn.query(`SELECT 1 FROM ${q(table.name)} LIMIT 0`);
        table.create = withAutoIncrement(await showCreateTable(conn, table.name), this.autoIncrement.get(table.name) ?? null);
        const cols = await readColumns(conn, this.target.database, table.name);
        table.columns = cols.columns;
        table.primaryKey = cols.primaryKey;
        if (table.systemVersioned) table.history = cols.period ?? { start: 'ROW_START', end: 'ROW_END' };
        const key = `table/${index}`;
        const { ref, rows } = await this.copyTable(conn, table, onBytes);
        streams[key] = ref;
        data[table.name] = { stream: key, rows };
      } catch (err) {
        if ((err as { code?: string }).code === 'ER_TABLE_DEF_CHANGED') {
          throw new BunkerError('engine', `mariadb: ${this.target.database}.${table.name} was altered during the backup`, {
            cause: err,
            hint: 'Run the backup again; avoid schema changes while it runs.',
          });
        }
        throw engineError(err, `copying ${this.target.database}.${table.name}`);
      }
    };

    const indexed = schema.tables.map((table, index) => ({ table, index }));
    const tx = indexed.filter((x) => x.table.transactional && x.table.hasData).sort((a, b) => b.table.sizeEstimate - a.table.sizeEstimate);
    const nonTx = indexed.filter((x) => !x.table.transactional && x.table.hasData);
    for (const x of indexed) {
      if (!x.table.hasData) {
        warnings.push(`${x.table.name}: engine ${x.table.engine} holds no data of its own; only its definition is backed up`);
        x.table.create = withAutoIncrement(x.table.create, this.autoIncrement.get(x.table.name) ?? null);
      }
    }

    const workers = this.dumpers.map(async (conn) => {
      for (let next = tx.shift(); next; next = tx.shift()) await dumpOne(conn, next.table, next.index);
    });
    const locked = (async () => {
      if (!this.locker) return;
      for (const x of nonTx) await dumpOne(this.locker, x.table, x.index);
      await this.locker.query('UNLOCK TABLES');
    })();
    // Let all workers stop before reporting the first failure, so close() finds idle connections.
    const results = await Promise.allSettled([...workers, locked]);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;

    const doc: SchemaDocument = { database: this.target.database, server: this.server, schema, data };
    streams.schema = await this.ctx.repo.storeBuffer(Buffer.from(JSON.stringify(doc)));
    const size = Object.values(streams).reduce((s, r) => s + r.size, 0);
    return {
      engine: 'mariadb',
      format: schema.tables.some((x) => x.history) ? FORMAT : 1,
      streams,
      trees: {},
      meta: {
        database: this.target.database,
        server: this.server,
        tables: schema.tables.length,
        pinMs: Math.round(this.pinMs * 10) / 10,
      },
      size,
      warnings,
    };
  }

  /** Streams one table's rows, as LOAD DATA text, into a repository stream. */
  private async copyTable(conn: Connection, table: TableInfo, onBytes: (n: number) => void): Promise<{ ref: StreamRef; rows: number }> {
    const history = table.history;
    const selected = [...table.columns.map((c) => (c.kind === 'bit' ? `${q(c.name)} + 0` : q(c.name))), ...(history ? [q(history.start), q(history.end)] : [])];
    // InnoDB reads in primary-key order anyway; saying so keeps the order stable for deduplication.
    // A key value has several versions in a system-versioned table, told apart by their end.
    const orderBy = [...table.primaryKey, ...(history && !table.primaryKey.includes(history.end) ? [history.end] : [])];
    const order = table.transactional && table.primaryKey.length ? ` ORDER BY ${orderBy.map(q).join(', ')}` : '';
    const sql = `SELECT ${selected.join(', ') || 'NULL'} FROM ${q(table.name)}${history ? ' FOR SYSTEM_TIME ALL' : ''}${order}`;
    const writer = this.ctx.repo.writeStream({ label: `mariadb ${this.target.database}.${table.name}` });
    const encoder = new RowEncoder();
    const raw = (conn as unknown as { connection: CbConnection }).connection;
    // Time the table's read stood still because the repository had not taken the last block yet:
    // where it is most of the copy, the repository's write path, not the server, sets the pace.
    const started = performance.now();
    let waited = 0;
    let pausedAt = -1;
    const onDrain = () => {
      waited += performance.now() - pausedAt;
      pausedAt = -1;
      reader.resume();
    };
    // The rows are read off the socket by readResultSet() (not through mysql2's per-row handling)
    // and encoded from the network chunks in place: no Buffer per value or array per row.
    const reader = readResultSet(raw, sql, Math.max(1, selected.length), (data, start, end) => {
      const block = encoder.pushPacket(data, start, end);
      if (!block) return;
      onBytes(block.length);
      if (!writer.write(block) && pausedAt < 0) {
        pausedAt = performance.now();
        reader.pause();
        writer.once('drain', onDrain);
      }
    });
    const onAbort = () => reader.fail(new BunkerError('aborted', 'mariadb: backup cancelled'));
    this.ctx.signal.addEventListener('abort', onAbort, { once: true });
    const onWriterError = (err: Error) => reader.fail(err);
    writer.on('error', onWriterError);
    try {
      await reader.done;
    } catch (err) {
      writer.destroy();
      // A half-read result cannot be abandoned on a live connection: drop it (close() copes).
      raw.destroy();
      throw err instanceof BunkerError ? err : engineError(err, `reading ${table.name}`);
    } finally {
      this.ctx.signal.removeEventListener('abort', onAbort);
      writer.removeListener('error', onWriterError);
      // The result set can end while reading is paused (the rest of a chunk is still framed); the
      // writer, ended next, may never drain: give the socket back to mysql2 reading.
      if (pausedAt >= 0) {
        writer.removeListener('drain', onDrain);
        onDrain();
      }
    }
    const last = encoder.take();
    if (last.length) onBytes(last.length);
    await new Promise<void>((resolve, reject) => {
      writer.once('error', reject);
      if (last.length) writer.end(last, () => resolve());
      else writer.end(() => resolve());
    });
    const ref = await writer.done();
    const ms = performance.now() - started;
    this.ctx.log.debug(
      `mariadb: ${table.name}: ${encoder.rows} rows, ${(encoder.bytes / 1e6).toFixed(1)} MB in ${(ms / 1000).toFixed(2)} s, ` +
        `${(waited / 1000).toFixed(2)} s of it waiting for the repository`,
    );
    return { ref, rows: encoder.rows };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const end = async (c: Connection | undefined) => {
      if (!c) return;
      await c.query('ROLLBACK').catch(() => {});
      await c.query('UNLOCK TABLES').catch(() => {});
      await c.end().catch(() => c.destroy());
    };
    await Promise.all([end(this.ctrl), end(this.locker), ...this.dumpers.map(end)]);
  }
}
