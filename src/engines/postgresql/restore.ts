// Restore beside the target: a shadow database is built (pre-data, parallel COPY, large objects,
// sequence positions, post-data with pg_restore -j), then one transaction renames the target away and
// the shadow into its place. A kill at any point leaves the target either wholly old or wholly new:
// before that transaction commits the target is untouched; after it, the target is the restored copy.
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createWriteStream } from 'node:fs';
import { join } from 'node:path';
import { Writable, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import pg from 'pg';
import { BunkerError, asBunkerError } from '../../core/errors.js';
import { redact } from '../../core/redact.js';
import type { RestoreContext, RestoreSession } from '../engine.js';
import type { ServiceArtifact } from '../../repo/types.js';
import { clientConfig, ident, literal, openSessions, toolEnv, withDatabase, type PgTarget } from './connection.js';
import { FORMAT, LARGE_OBJECTS_STREAM, SCHEMA_STREAM, tableStreamKey, type PgMeta } from './format.js';
import { parallel, runTool } from './tools.js';
import { copyFrom } from './copy.js';

/** Fixed-length, per-target names for the shadow and the displaced database (names cap at 63 bytes). */
export function sideNames(target: string): { shadow: string; old: string } {
  const h = createHash('sha256').update(target).digest('hex').slice(0, 12);
  return { shadow: `bunker_shadow_${h}`, old: `bunker_old_${h}` };
}

/**
 * maintenance_work_mem for the shadow's index builds, per parallel job. Small on purpose: a sort in
 * runs of 16 MB, merged in one pass for indexes up to several GB, beat a sort in one 256 MB piece
 * (which PostgreSQL also spread over two parallel workers). The big sort faults in and walks a fresh
 * quarter-gigabyte per backend. pgbench scale 30's primary key: 1.20-1.24 s at 8-16 MB,
 * 1.36-1.41 s at 64 MB, 1.47-1.55 s at 256 MB; the whole restore 4.37-4.48 s against 4.84-5.78 s.
 */
const LOAD_SORT_MEMORY = '16MB';
/** How long a restore waits for another's lock on the same target before reporting it (milliseconds). */
const LOCK_WAIT_MS = 5000;
/** SQLSTATE of a lock wait that ran out (lock_timeout). */
const LOCK_NOT_AVAILABLE = '55P03';

/** Settings whose value is a list of (possibly double-quoted) names; ALTER DATABASE takes them element by element. */
export const LIST_SETTINGS = new Set(['search_path', 'temp_tablespaces', 'session_preload_libraries', 'local_preload_libraries']);

/** Splits `"a b", public` into ['a b', 'public'] (double quotes group, "" is a literal quote). */
export function splitSettingList(value: string): string[] {
  const out: string[] = [];
  let i = 0;
  while (i < value.length) {
    while (value[i] === ' ' || value[i] === '\t') i++;
    let item = '';
    if (value[i] === '"') {
      i++;
      while (i < value.length) {
        if (value[i] === '"' && value[i + 1] === '"') (item += '"'), (i += 2);
        else if (value[i] === '"') {
          i++;
          break;
        } else item += value[i++];
      }
      while (i < value.length && value[i] !== ',') i++;
    } else {
      while (i < value.length && value[i] !== ',') item += value[i++];
      item = item.trim();
    }
    out.push(item);
    i++; // the comma
  }
  return out;
}


export interface PgRestoreOptions {
  jobs: number;
  noOwner: boolean;
  stateDir: string;
}

export class PgRestoreSession implements RestoreSession {
  private readonly meta: PgMeta;
  private readonly names: { shadow: string; old: string };
  private staged = false;
  /** Holds a session advisory lock on the target's name from stage() until commit() or abort(). */
  private lockClient: pg.Client | undefined;

  constructor(
    private readonly target: PgTarget,
    private readonly ctx: RestoreContext,
    private readonly artifact: ServiceArtifact,
    private readonly options: PgRestoreOptions,
  ) {
    if (artifact.engine !== 'postgresql') {
      throw new BunkerError('target_mismatch', `cannot restore a ${artifact.engine} backup into a postgresql service`);
    }
    if (artifact.format !== FORMAT) {
      throw new BunkerError('not_restorable', `postgresql backup format ${artifact.format} is not known to this Bunker`, {
        hint: 'Restore with the Bunker version that made the backup, or a newer one.',
      });
    }
    if (!artifact.streams[SCHEMA_STREAM]) throw new BunkerError('not_restorable', 'postgresql backup has no schema stream');
    this.meta = artifact.meta as unknown as PgMeta;
    this.names = sideNames(target.database);
  }

  async stage(): Promise<void> {
    const { log } = this.ctx;
    const { shadow, old } = this.names;
    const loads = this.loadWork(); // a backup that lacks a table's data fails before anything is created
    await this.lockTarget();
    const work = await mkdtemp(join(this.options.stateDir, 'pg-restore-'));
    // The schema archive (a small file for pg_restore) is read from the repository meanwhile.
    const schemaFile = join(work, 'schema.dump');
    const schemaSaved = this.saveStream(SCHEMA_STREAM, schemaFile);
    schemaSaved.catch(() => {}); // awaited below
    let loaders: Promise<pg.Client[]> | undefined;
    try {
      await this.admin(async (admin) => {
        // Leftovers of a killed run: an unfinished shadow, or a displaced database whose swap succeeded.
        await admin.query(`DROP DATABASE IF EXISTS ${ident(shadow)} WITH (FORCE)`);
        await admin.query(`DROP DATABASE IF EXISTS ${ident(old)} WITH (FORCE)`);
        const missing = await this.missingRoles(admin);
        if (missing.length && !this.options.noOwner) {
          throw new BunkerError('engine', `the target server ${this.target.display} lacks roles the backup refers to: ${missing.join(', ')}`, {
            hint: 'Create these roles on the target server, or set no_owner: true on the service to restore everything owned by the connecting user.',
            details: { missingRoles: missing },
          });
        }
        if (missing.length) log.warn(`postgresql restore: roles ${missing.join(', ')} are missing; ownership and privileges are not restored (no_owner)`);
        const ownerExists = !missing.includes(this.meta.owner) && !this.options.noOwner;
        await admin.query(
          `CREATE DATABASE ${ident(shadow)} TEMPLATE template0 ENCODING ${literal(this.meta.encoding)}` +
            ` LC_COLLATE ${literal(this.meta.collate)} LC_CTYPE ${literal(this.meta.ctype)}` +
            (ownerExists ? ` OWNER ${ident(this.meta.owner)}` : ''),
        );
      });
      this.staged = true;
      if (this.meta.settings?.length || this.meta.comment) await this.admin((admin) => this.applyDatabaseProperties(admin, shadow));
      log.info(`postgresql restore: building ${this.target.database} in shadow database ${shadow}`);

      // The shadow is private until the swap: no need to wait for each commit's WAL flush (the swap's
      // own commit is synchronous and WAL is ordered, so once it is durable, so is the shadow), and index
      // builds sort in small runs (LOAD_SORT_MEMORY).
      const base = toolEnv(withDatabase(this.target, shadow), { PGCLIENTENCODING: this.meta.encoding });
      const env = {
        ...base,
        PGOPTIONS: `${base.PGOPTIONS ?? ''} -c synchronous_commit=off -c maintenance_work_mem=${LOAD_SORT_MEMORY}`.trim(),
      };
      const started = Date.now();
      const phase = (what: string) => log.debug(`postgresql restore: ${what} after ${Date.now() - started} ms`);
      const ownerFlags = this.options.noOwner ? ['--no-owner', ...(await this.rolesMissingFlags())] : [];
      await schemaSaved;
      const pgRestore = (args: string[], what: string, input?: Readable) =>
        runTool({
          tool: 'pg_restore',
          args: ['--exit-on-error', ...ownerFlags, '-d', shadow, ...args],
          env,
          input,
          signal: this.ctx.signal,
          what,
        });

      // The load connections connect while pre-data runs, and serve every table in turn.
      loaders = openSessions(
        withDatabase(this.target, shadow),
        Math.min(this.options.jobs, loads.length),
        `SET client_encoding TO ${literal(this.meta.encoding)}; SET synchronous_commit = off`,
      );
      loaders.catch(() => {}); // awaited below
      await pgRestore(['--section=pre-data', '--single-transaction', schemaFile], 'creating the schema');
      phase('pre-data');
      await this.copyIn(loads, await loaders);
      phase('table data');
      await this.loadLargeObjects(pgRestore, work);
      await this.setSequences(shadow);
      await pgRestore(['--section=post-data', `--jobs=${this.options.jobs}`, schemaFile], 'building indexes, constraints and triggers');
      phase('post-data');
      await this.refreshMatviews(shadow);
      log.info(`postgresql restore: shadow database ${shadow} is complete`);
    } catch (err) {
      throw asBunkerError(err, 'engine', `postgresql restore into ${this.target.display}`);
    } finally {
      const clients = (await loaders?.catch(() => undefined)) ?? [];
      await Promise.all(clients.map((c) => c.end().catch(() => {})));
      await schemaSaved.catch(() => {});
      await rm(work, { recursive: true, force: true });
    }
  }

  async commit(): Promise<void> {
    if (!this.staged) throw new BunkerError('internal', 'postgresql restore: commit() before stage()');
    const { shadow, old } = this.names;
    const target = this.target.database;
    const { log } = this.ctx;
    await this.admin(async (admin) => {
      const exists = (await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [target])).rowCount === 1;
      for (let attempt = 1; ; attempt++) {
        try {
          await admin.query('BEGIN');
          if (exists) {
            const { rows } = await admin.query(
              'SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()',
              [target],
            );
            log.info(`postgresql restore: ended ${rows[0].n} connection(s) to database ${target} to swap in the restored copy`);
            await admin.query(`ALTER DATABASE ${ident(target)} RENAME TO ${ident(old)}`);
          }
          await admin.query(`ALTER DATABASE ${ident(shadow)} RENAME TO ${ident(target)}`);
          await admin.query('COMMIT');
          break;
        } catch (err) {
          await admin.query('ROLLBACK').catch(() => {});
          // New clients can connect between terminating and renaming; try again a few times.
          if (attempt >= 5 || !/being accessed by other users/.test((err as Error).message)) {
            throw asBunkerError(err, 'engine', `postgresql restore: swapping in ${target}`);
          }
          log.warn(`postgresql restore: ${target} still has connections, retrying the swap (${attempt})`);
        }
      }
      this.staged = false;
      log.info(`postgresql restore: ${target} is now the restored copy`);
      // Only now is the displaced database surplus; a kill before this line leaves it for the next stage() to drop.
      if (exists) await admin.query(`DROP DATABASE IF EXISTS ${ident(old)} WITH (FORCE)`);
    });
    await this.unlockTarget();
  }

  async abort(): Promise<void> {
    try {
      if (this.staged) {
        await this.withAdmin((admin) => admin.query(`DROP DATABASE IF EXISTS ${ident(this.names.shadow)} WITH (FORCE)`));
        this.staged = false;
      }
    } finally {
      await this.unlockTarget();
    }
  }

  /**
   * Database-wide settings and the comment (pg_dump writes these only with --create, which would name
   * the original database). Values go in as string literals; list settings such as search_path are
   * split into their elements first, as pg_dump does, so nothing from the backup is run as SQL text.
   */
  private async applyDatabaseProperties(admin: pg.Client, shadow: string): Promise<void> {
    for (const entry of this.meta.settings ?? []) {
      const eq = entry.indexOf('=');
      if (eq <= 0) continue;
      const name = entry.slice(0, eq);
      const value = entry.slice(eq + 1);
      const values = LIST_SETTINGS.has(name.toLowerCase()) ? splitSettingList(value) : [value];
      await admin.query(`ALTER DATABASE ${ident(shadow)} SET ${ident(name)} TO ${values.map(literal).join(', ')}`);
    }
    if (this.meta.comment) await admin.query(`COMMENT ON DATABASE ${ident(shadow)} IS ${literal(this.meta.comment)}`);
  }

  /**
   * Two restores into the same database would share the shadow's name; the second one is refused.
   * The lock is a session lock, so a killed restore releases it with its connection.
   */
  private async lockTarget(): Promise<void> {
    const client = await this.connectAdmin();
    const key = `bunker restore ${this.target.database}`;
    try {
      // A restore killed a moment ago still holds the lock until its server process sees the closed
      // connection, which a busy server can take a second or more to do: wait a little for that
      // before calling it a restore that is running.
      await client.query(`SET lock_timeout = ${LOCK_WAIT_MS}`);
      await client.query('SELECT pg_advisory_lock(hashtext($1))', [key]);
      await client.query('RESET lock_timeout');
    } catch (err) {
      await client.end().catch(() => {});
      if ((err as { code?: string }).code !== LOCK_NOT_AVAILABLE) throw err;
      throw new BunkerError('locked', `another restore into database ${this.target.database} on ${this.target.display} is running`, {
        hint: 'Wait for it to finish, then try again.',
      });
    }
    this.lockClient = client;
  }

  private async unlockTarget(): Promise<void> {
    const client = this.lockClient;
    this.lockClient = undefined;
    await client?.end().catch(() => {});
  }

  /** Every table's stream (each part of a split table), largest first, so the last load to end is a small one. */
  private loadWork() {
    return this.meta.tables
      .flatMap((t) => Array.from({ length: t.parts ?? 1 }, (_, part) => ({ t, key: tableStreamKey(t, part) })))
      .map((w) => {
        const ref = this.artifact.streams[w.key];
        if (!ref) throw new BunkerError('not_restorable', `postgresql backup lacks the data of table ${w.t.schema}.${w.t.name}`);
        return { ...w, ref };
      })
      .sort((a, b) => b.ref.size - a.ref.size);
  }

  /**
   * Loads every stream over the given connections, each stored stream sent as it is read (no psql in
   * between). A table loaded in one piece is truncated and loaded with FREEZE in one transaction: its
   * rows are stored frozen and all-visible, so the index builds and the first reads after the swap do
   * not rewrite every page to set hint bits. The parts of a split table load side by side instead
   * (FREEZE needs the table to have been created or truncated in the loading transaction, which only
   * one connection can do).
   */
  private async copyIn(work: ReturnType<PgRestoreSession['loadWork']>, clients: pg.Client[]): Promise<void> {
    let done = 0;
    const { signal } = this.ctx;
    await parallel(work, clients.length, async ({ t, ref }, worker) => {
      const client = clients[worker]!;
      const what = `loading table ${t.schema}.${t.name}`;
      if (signal.aborted) throw new BunkerError('aborted', `${what}: cancelled`);
      const columns = t.columns ? ` (${t.columns})` : '';
      const whole = (t.parts ?? 1) <= 1;
      const input = this.ctx.repo.readStream(ref);
      const onAbort = () => input.destroy(new BunkerError('aborted', `${what}: cancelled`));
      signal.addEventListener('abort', onAbort, { once: true });
      try {
        if (whole) await client.query(`BEGIN; TRUNCATE ONLY ${t.qualified}`);
        await copyFrom(client, `COPY ${t.qualified}${columns} FROM STDIN${whole ? ' (FREEZE)' : ''}`, input);
        if (whole) await client.query('COMMIT');
      } catch (err) {
        input.destroy();
        if (signal.aborted) throw new BunkerError('aborted', `${what}: cancelled`);
        throw new BunkerError('engine', `${what}: ${redact((err as Error).message)}`, { cause: err });
      } finally {
        signal.removeEventListener('abort', onAbort);
      }
      done += ref.size;
      this.ctx.progress({ bytes: done, message: `${t.schema}.${t.name}` });
    });
  }

  private async loadLargeObjects(
    pgRestore: (args: string[], what: string, input?: Readable) => Promise<void>,
    work: string,
  ): Promise<void> {
    const ref = this.artifact.streams[LARGE_OBJECTS_STREAM];
    if (!ref) return;
    // The archive also carries the schema; a list file picks only the large-object entries.
    const listing: Buffer[] = [];
    await runTool({
      tool: 'pg_restore',
      args: ['-l'],
      env: toolEnv(this.target),
      input: this.ctx.repo.readStream(ref),
      output: new Writable({
        write(chunk: Buffer, _e, cb) {
          listing.push(chunk);
          cb();
        },
      }),
      what: 'listing large objects',
    });
    const wanted = Buffer.concat(listing)
      .toString('utf8')
      .split('\n')
      .filter((line) => /^\d+; \d+ \d+ (BLOB|BLOBS|COMMENT - LARGE OBJECT|ACL - LARGE OBJECT|SECURITY LABEL - LARGE OBJECT) /.test(line));
    const listFile = join(work, 'large-objects.list');
    await writeFile(listFile, wanted.join('\n') + '\n');
    await pgRestore(['-L', listFile], 'loading large objects', this.ctx.repo.readStream(ref));
  }

  private async refreshMatviews(shadow: string): Promise<void> {
    const views = this.meta.matviews ?? [];
    if (!views.length) return;
    await this.withShadow(shadow, async (client) => {
      for (const view of views) await client.query(`REFRESH MATERIALIZED VIEW ${view}`);
    });
  }

  private async withShadow(shadow: string, fn: (client: pg.Client) => Promise<void>): Promise<void> {
    const client = new pg.Client(clientConfig(withDatabase(this.target, shadow)));
    client.on('error', () => {});
    await client.connect();
    try {
      await fn(client);
    } finally {
      await client.end().catch(() => {});
    }
  }

  private async setSequences(shadow: string): Promise<void> {
    if (!this.meta.sequences.length) return;
    await this.withShadow(shadow, async (client) => {
      const seqs = this.meta.sequences;
      for (let i = 0; i < seqs.length; i += 500) {
        const batch = seqs.slice(i, i + 500);
        const sql = batch
          .map((s) => `SELECT pg_catalog.setval(${literal(s.qualified)}, ${BigInt(s.lastValue).toString()}, ${s.isCalled ? 'true' : 'false'})`)
          .join('; ');
        await client.query(sql);
      }
    });
  }

  private async missingRoles(admin: pg.Client): Promise<string[]> {
    const { rows } = await admin.query('SELECT rolname FROM pg_roles WHERE rolname = ANY($1::text[])', [this.meta.roles]);
    const present = new Set(rows.map((r) => r.rolname as string));
    return this.meta.roles.filter((r) => !present.has(r));
  }

  private async rolesMissingFlags(): Promise<string[]> {
    const missing = await this.admin((admin) => this.missingRoles(admin));
    // Grants to roles that don't exist would fail the load; with no_owner they are left out.
    return missing.length ? ['--no-acl'] : [];
  }

  private async saveStream(key: string, file: string): Promise<void> {
    const ref = this.artifact.streams[key]!;
    await pipeline(this.ctx.repo.readStream(ref), createWriteStream(file));
  }

  /**
   * A connection to the server's maintenance database (postgres, else template1) for CREATE/DROP/RENAME.
   * When postgres itself is the target (databases: all), template1 first: the swap can't rename the
   * database it is connected to.
   */
  private async connectAdmin(): Promise<pg.Client> {
    let lastErr: unknown;
    for (const db of this.target.database === 'postgres' ? ['template1', 'postgres'] : ['postgres', 'template1']) {
      const c = new pg.Client(clientConfig(withDatabase(this.target, db)));
      c.on('error', () => {});
      try {
        await c.connect();
        return c;
      } catch (err) {
        lastErr = err;
        await c.end().catch(() => {});
      }
    }
    throw new BunkerError('unreachable', `cannot connect to PostgreSQL at ${this.target.display}: ${(lastErr as Error)?.message}`, {
      cause: lastErr,
      hint: 'Check that the server is running and that the user may connect to the postgres or template1 database.',
    });
  }

  /**
   * Runs `fn` on the connection that holds the target's lock (a maintenance-database connection, as
   * connectAdmin() opens it), so stage() and commit() don't each start another backend; on a fresh one
   * when there is none.
   */
  private async admin<T>(fn: (client: pg.Client) => Promise<T>): Promise<T> {
    return this.lockClient ? fn(this.lockClient) : this.withAdmin(fn);
  }

  private async withAdmin<T>(fn: (client: pg.Client) => Promise<T>): Promise<T> {
    const client = await this.connectAdmin();
    try {
      return await fn(client);
    } finally {
      await client.end().catch(() => {});
    }
  }
}
