// A consistent backup: one REPEATABLE READ transaction exports its snapshot (pin, milliseconds); the
// schema comes from pg_dump --snapshot and each table's rows from COPY on `jobs` connections that
// adopt the same snapshot, one repository stream per table so an unchanged table deduplicates.
import type { Writable } from 'node:stream';
import pg from 'pg';
import { BunkerError, asBunkerError } from '../../core/errors.js';
import { redact } from '../../core/redact.js';
import type { BackupContext, BackupSession } from '../engine.js';
import type { ServiceArtifact, StreamRef } from '../../repo/types.js';
import {
  databaseInfo,
  largeObjectCount,
  listTables,
  lockTables,
  partitionedParents,
  populatedMatviews,
  readSequences,
  referencedRoles,
  type TableEntry,
} from './catalog.js';
import { connect, literal, openSessions, toolEnv, type PgTarget } from './connection.js';
import { parallel, runTool } from './tools.js';
import { copyTo } from './copy.js';
import { FORMAT, type PgMeta, tableStreamKey, SCHEMA_STREAM, LARGE_OBJECTS_STREAM, partQuery, partsFor } from './format.js';

export class PgBackupSession implements BackupSession {
  private client: pg.Client | undefined;
  private snapshot: string | undefined;
  private closed = false;

  constructor(
    private readonly target: PgTarget,
    private readonly ctx: BackupContext,
    private readonly jobs: number,
  ) {}

  async prepare(): Promise<void> {
    this.client = await connect(this.target);
  }

  async pin(): Promise<void> {
    const client = this.requireClient();
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY');
    const { rows } = await client.query('SELECT pg_export_snapshot() AS s');
    this.snapshot = rows[0].s as string;
  }

  async stream(): Promise<ServiceArtifact> {
    const client = this.requireClient();
    const snapshot = this.snapshot;
    if (!snapshot) throw new BunkerError('internal', 'postgresql backup: stream() called before pin()');
    const { repo, log, signal } = this.ctx;
    const started = Date.now();
    const phase = (what: string) => log.debug(`postgresql backup: ${what} after ${Date.now() - started} ms`);
    let copiers: Promise<pg.Client[]> | undefined;
    try {
      const info = await databaseInfo(client);
      const tables = await listTables(client);
      for (const t of tables) t.parts = partsFor(t, info.serverVersionNum, info.sharedBufferPages);
      // Largest first (a split table's parts early), so the last job to finish is a small one.
      const work = tables
        .flatMap((t) => Array.from({ length: t.parts }, (_, part) => ({ t, part, bytes: t.bytes / t.parts })))
        .sort((a, b) => b.bytes - a.bytes);
      // The COPY connections connect and adopt the snapshot while the rest of the catalog is read; each
      // copies table after table in that transaction, so many small tables cost no backend start each.
      copiers = openSessions(
        this.target,
        Math.min(this.jobs, work.length),
        `SET client_encoding TO ${literal(info.encoding)}; ` +
          // Fail rather than silently skip rows hidden by row-level security (as pg_dump does).
          `SET row_security = off; BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; SET TRANSACTION SNAPSHOT ${literal(snapshot)}`,
      );
      copiers.catch(() => {}); // awaited below
      await lockTables(client, [...tables.map((t) => t.qualified), ...(await partitionedParents(client))]);
      const sequences = await readSequences(client);
      const roles = await referencedRoles(client);
      const largeObjects = await largeObjectCount(client);
      const matviews = await populatedMatviews(client);
      phase('catalog');
      log.info(`postgresql ${info.name}: ${tables.length} tables, ${sequences.length} sequences, ${largeObjects} large objects`);

      const env = toolEnv(this.target, { PGCLIENTENCODING: info.encoding });
      const streams: Record<string, StreamRef> = {};
      let bytes = 0;
      const totalBytes = tables.reduce((s, t) => s + t.bytes, 0);
      const store = async (key: string, label: string, produce: (out: NodeJS.WritableStream) => Promise<void>) => {
        const writer = repo.writeStream({ label });
        const ran = produce(writer);
        const [ref] = await Promise.all([writer.done(), ran]);
        streams[key] = ref;
        bytes += ref.size;
        phase(`${label} (${ref.size} bytes)`);
        this.ctx.progress({ bytes, totalBytes });
      };

      // Schema (pre-data and post-data) is one small custom-format archive, so the restore can build
      // post-data objects in parallel with pg_restore -j.
      const schemaDump = store(SCHEMA_STREAM, `${info.name} schema`, (out) =>
        runTool({
          tool: 'pg_dump',
          args: ['-Fc', '-Z0', '--schema-only', `--snapshot=${snapshot}`, '-d', this.target.database],
          env,
          output: out as never,
          signal,
          what: `dumping the schema of ${info.name}`,
        }),
      );
      // Large objects: their metadata (owner, ACL, comments) and contents; the schema rides along but
      // the restore takes only the large-object entries from this archive.
      const loDump =
        largeObjects > 0
          ? store(LARGE_OBJECTS_STREAM, `${info.name} large objects`, (out) =>
              runTool({
                tool: 'pg_dump',
                args: ['-Fc', '-Z0', '--exclude-table-data=*.*', '--blobs', `--snapshot=${snapshot}`, '-d', this.target.database],
                env,
                output: out as never,
                signal,
                what: `dumping the large objects of ${info.name}`,
              }),
            )
          : Promise.resolve();

      const sessions = await copiers;
      const onAbort = () => sessions.forEach((c) => void c.end().catch(() => {}));
      signal.addEventListener('abort', onAbort, { once: true });
      const copies = parallel(work, sessions.length, ({ t, part }, worker) =>
        store(tableStreamKey(t, part), `${info.name} ${t.schema}.${t.name}#${part}`, (out) => this.copyOut(sessions[worker]!, t, part, out)),
      ).finally(() => signal.removeEventListener('abort', onAbort));
      await Promise.all([schemaDump, loDump, copies]);

      const meta: PgMeta = {
        database: info.name,
        encoding: info.encoding,
        collate: info.collate,
        ctype: info.ctype,
        owner: info.owner,
        serverVersion: info.serverVersion,
        serverVersionNum: info.serverVersionNum,
        tables,
        sequences,
        roles,
        largeObjects,
        matviews,
        settings: info.settings,
        comment: info.comment,
      };
      return {
        engine: 'postgresql',
        format: FORMAT,
        streams,
        trees: {},
        meta: meta as unknown as Record<string, unknown>,
        size: bytes,
        warnings: [],
      };
    } catch (err) {
      throw asBunkerError(err, 'engine', `postgresql backup of ${this.target.display}`);
    } finally {
      const sessions = (await copiers?.catch(() => undefined)) ?? [];
      await Promise.all(sessions.map((c) => c.end().catch(() => {})));
    }
  }

  /**
   * COPY one table (or one ctid range of it) as of the pinned snapshot. Text format: portable across
   * versions and type OIDs. The client encoding is the database's, so the stored bytes are the
   * database's own and the restore loads them without conversion.
   */
  private async copyOut(client: pg.Client, t: TableEntry, part: number, out: NodeJS.WritableStream): Promise<void> {
    const { signal } = this.ctx;
    try {
      if (signal.aborted) throw new BunkerError('aborted', `copying table ${t.schema}.${t.name}: cancelled`);
      await copyTo(client, `COPY ${partQuery(t, part)} TO STDOUT`, out as Writable);
      out.end();
    } catch (err) {
      (out as Writable).destroy(err as Error); // the stream's writer stops and reports this failure
      if (signal.aborted) throw new BunkerError('aborted', `copying table ${t.schema}.${t.name}: cancelled`);
      throw new BunkerError('engine', `copying table ${t.schema}.${t.name}: ${redact((err as Error).message)}`, { cause: err });
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const client = this.client;
    this.client = undefined;
    if (!client) return;
    try {
      if (this.snapshot) await client.query('ROLLBACK');
    } catch {
      // the connection may already be gone; ending it releases the snapshot either way
    }
    await client.end().catch(() => {});
  }

  private requireClient(): pg.Client {
    if (!this.client) throw new BunkerError('internal', 'postgresql backup: prepare() was not called');
    return this.client;
  }
}
