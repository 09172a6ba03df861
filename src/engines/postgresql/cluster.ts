// `databases: all`: every database of the server plus its roles, in one artifact. Each database goes
// through the single-database machinery (its own snapshot, schema archive and per-table streams);
// this file adds the list of databases, the roles, and running the per-database sessions side by side.
import pg from 'pg';
import { BunkerError, asBunkerError } from '../../core/errors.js';
import { redact } from '../../core/redact.js';
import type { BackupContext, BackupSession, RestoreContext, RestoreSession } from '../engine.js';
import type { ServiceArtifact, StreamRef } from '../../repo/types.js';
import { PgBackupSession } from './backup.js';
import { connect, ident, literal, withDatabase, type PgTarget } from './connection.js';
import { FORMAT, type PgMeta } from './format.js';
import { LIST_SETTINGS, PgRestoreSession, splitSettingList, type PgRestoreOptions } from './restore.js';

/** Artifacts of `databases: all` (single-database artifacts stay format 1). */
export const CLUSTER_FORMAT = 2;
/** The roles (JSON, password hashes included) live in a stream, never in meta, which `backup:get` shows. */
export const ROLES_STREAM = 'roles';

/** Bunker's own transient databases (a restore's shadow or displaced copy) are never backed up. */
const TRANSIENT = /^bunker_(shadow|old)_[0-9a-f]{12}$/;

export function databaseStreamKey(database: string, key: string): string {
  return `db:${JSON.stringify(database)}:${key}`;
}

export interface RoleEntry {
  name: string;
  superuser: boolean;
  inherit: boolean;
  createRole: boolean;
  createDb: boolean;
  login: boolean;
  replication: boolean;
  bypassRls: boolean;
  connectionLimit: number;
  /** The stored hash (SCRAM or md5) as pg_dumpall keeps it; null when none or not readable. */
  password: string | null;
  validUntil: string | null;
  comment: string | null;
  /** `ALTER ROLE … SET` entries for all databases ("name=value"). */
  settings: string[];
}

export interface RolesRecord {
  roles: RoleEntry[];
  memberships: { role: string; member: string; admin: boolean }[];
  /** False when the backup user could not read pg_authid: no passwords were kept. */
  passwords: boolean;
}

export interface ClusterMeta {
  kind: 'cluster';
  serverVersion: string;
  /** Databases in restore order; each one's meta is what a single-database backup records. */
  databases: { name: string; meta: PgMeta }[];
  roles: string[];
}

function inDatabase(database: string, err: unknown): BunkerError {
  const e = asBunkerError(err, 'engine');
  if (e.message.includes(`database ${database}:`)) return e;
  return new BunkerError(e.code, `database ${database}: ${e.message}`, { cause: e.cause ?? err, hint: e.hint, details: e.details });
}

/** Every database that can hold data: not the templates, not Bunker's own transient copies. */
export async function listDatabases(client: pg.Client): Promise<string[]> {
  const { rows } = await client.query(
    `SELECT datname FROM pg_database WHERE NOT datistemplate AND datallowconn ORDER BY datname`,
  );
  return rows.map((r) => r.datname as string).filter((n) => !TRANSIENT.test(n));
}

/** Roles as pg_dumpall --globals-only keeps them (hashes from pg_authid when the user may read it). */
export async function readRoles(client: pg.Client): Promise<RolesRecord> {
  const su = await client.query('SELECT rolsuper FROM pg_roles WHERE rolname = current_user');
  const passwords = su.rows[0]?.rolsuper === true;
  const source = passwords ? 'pg_authid' : 'pg_roles';
  const { rows } = await client.query(`
    SELECT a.rolname, a.rolsuper, a.rolinherit, a.rolcreaterole, a.rolcreatedb, a.rolcanlogin, a.rolreplication,
           a.rolbypassrls, a.rolconnlimit, ${passwords ? 'a.rolpassword' : 'NULL::text'} AS rolpassword,
           to_char(a.rolvaliduntil AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS validuntil,
           a.rolvaliduntil = 'infinity' AS forever,
           shobj_description(a.oid, 'pg_authid') AS comment,
           coalesce((SELECT s.setconfig FROM pg_db_role_setting s WHERE s.setrole = a.oid AND s.setdatabase = 0), '{}') AS settings
    FROM ${source} a WHERE a.rolname !~ '^pg_' ORDER BY a.rolname`);
  const members = await client.query(`
    SELECT r.rolname AS role, m.rolname AS member, am.admin_option AS admin
    FROM pg_auth_members am JOIN pg_roles r ON r.oid = am.roleid JOIN pg_roles m ON m.oid = am.member
    WHERE m.rolname !~ '^pg_' ORDER BY 1, 2`);
  return {
    passwords,
    roles: rows.map((r) => ({
      name: r.rolname,
      superuser: r.rolsuper,
      inherit: r.rolinherit,
      createRole: r.rolcreaterole,
      createDb: r.rolcreatedb,
      login: r.rolcanlogin,
      replication: r.rolreplication,
      bypassRls: r.rolbypassrls,
      connectionLimit: r.rolconnlimit,
      password: r.rolpassword ?? null,
      validUntil: r.forever ? 'infinity' : (r.validuntil ?? null),
      comment: r.comment ?? null,
      settings: r.settings,
    })),
    memberships: members.rows.map((r) => ({ role: r.role, member: r.member, admin: r.admin })),
  };
}

export class PgClusterBackupSession implements BackupSession {
  private client: pg.Client | undefined;
  private sessions: { name: string; session: PgBackupSession }[] = [];
  private closed = false;

  constructor(
    private readonly target: PgTarget,
    private readonly ctx: BackupContext,
    private readonly jobs: number,
  ) {}

  /** Lists the databases and opens one session (one connection) per database. */
  async prepare(): Promise<void> {
    const { log } = this.ctx;
    this.client = await connect(this.target);
    const names = await listDatabases(this.client);
    for (const name of names) {
      const session = new PgBackupSession(withDatabase(this.target, name), this.ctx, this.jobs);
      try {
        await session.prepare();
      } catch (err) {
        // Dropped since the list was read: it is not part of the server's state at the pin either.
        const gone = await this.client.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
        if (gone.rowCount === 0) {
          log.warn(`postgresql backup: database ${name} was dropped while the backup started; it is not included`);
          continue;
        }
        throw inDatabase(name, err);
      }
      this.sessions.push({ name, session });
    }
    log.info(`postgresql backup: ${this.sessions.length} databases: ${this.sessions.map((s) => s.name).join(', ')}`);
  }

  /**
   * One exported snapshot cannot span databases, so each database pins its own, all at once: every
   * snapshot is taken inside the same hold, a few round trips apart.
   */
  async pin(): Promise<void> {
    await Promise.all(
      this.sessions.map(async ({ name, session }) => {
        try {
          await session.pin();
        } catch (err) {
          throw inDatabase(name, err);
        }
      }),
    );
  }

  async stream(): Promise<ServiceArtifact> {
    const client = this.client;
    if (!client) throw new BunkerError('internal', 'postgresql backup: prepare() was not called');
    const { repo, log } = this.ctx;
    // Roles are shared catalogs and not part of any database's snapshot; read right after the pin,
    // as pg_dumpall does.
    const roles = await readRoles(client);
    if (!roles.passwords) {
      log.warn('postgresql backup: the connecting user is not a superuser and cannot read pg_authid; role passwords are not backed up');
    }
    const version = (await client.query(`SELECT current_setting('server_version') AS v`)).rows[0].v as string;
    const streams: Record<string, StreamRef> = {};
    streams[ROLES_STREAM] = await repo.storeBuffer(Buffer.from(JSON.stringify(roles)));
    let size = streams[ROLES_STREAM].size;
    const databases: ClusterMeta['databases'] = [];
    const warnings: string[] = [];
    // One database at a time, each with `jobs` parallel COPY sessions: the server's cores are the limit.
    for (const { name, session } of this.sessions) {
      let artifact: ServiceArtifact;
      try {
        artifact = await session.stream();
      } catch (err) {
        throw inDatabase(name, err);
      } finally {
        await session.close();
      }
      for (const [key, ref] of Object.entries(artifact.streams)) streams[databaseStreamKey(name, key)] = ref;
      databases.push({ name, meta: artifact.meta as unknown as PgMeta });
      warnings.push(...artifact.warnings.map((w) => `database ${name}: ${w}`));
      size += artifact.size;
    }
    log.info(`postgresql backup: ${databases.length} databases and ${roles.roles.length} roles`);
    const meta: ClusterMeta = { kind: 'cluster', serverVersion: version, databases, roles: roles.roles.map((r) => r.name) };
    return {
      engine: 'postgresql',
      format: CLUSTER_FORMAT,
      streams,
      trees: {},
      meta: meta as unknown as Record<string, unknown>,
      size,
      warnings,
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all(this.sessions.map(({ session }) => session.close().catch(() => {})));
    const client = this.client;
    this.client = undefined;
    await client?.end().catch(() => {});
  }
}

export class PgClusterRestoreSession implements RestoreSession {
  private readonly meta: ClusterMeta;
  private readonly selected: ClusterMeta['databases'];
  private sessions: { name: string; session: PgRestoreSession }[] = [];
  private committed: string[] = [];

  constructor(
    private readonly target: PgTarget,
    private readonly ctx: RestoreContext,
    private readonly artifact: ServiceArtifact,
    private readonly options: PgRestoreOptions,
  ) {
    this.meta = artifact.meta as unknown as ClusterMeta;
    if (this.meta?.kind !== 'cluster' || !artifact.streams[ROLES_STREAM]) {
      throw new BunkerError('not_restorable', 'postgresql backup of all databases lacks its list of databases or roles');
    }
    // RestoreOptions.paths names the databases to restore (all of them when absent).
    const wanted = ctx.options.paths;
    if (wanted?.length) {
      const known = new Set(this.meta.databases.map((d) => d.name));
      const unknown = wanted.filter((n) => !known.has(n));
      if (unknown.length) {
        throw new BunkerError('usage', `the backup has no database ${unknown.join(', ')}`, {
          hint: `It has: ${[...known].join(', ')}.`,
        });
      }
    }
    // The maintenance database last: the other swaps connect through it.
    this.selected = this.meta.databases
      .filter((d) => !wanted?.length || wanted.includes(d.name))
      .sort((a, b) => Number(a.name === 'postgres') - Number(b.name === 'postgres'));
  }

  async stage(): Promise<void> {
    await this.restoreRoles();
    for (const { name, meta } of this.selected) {
      const prefix = databaseStreamKey(name, '');
      const streams: Record<string, StreamRef> = {};
      for (const [key, ref] of Object.entries(this.artifact.streams)) {
        if (key.startsWith(prefix)) streams[key.slice(prefix.length)] = ref;
      }
      const sub: ServiceArtifact = {
        engine: 'postgresql',
        format: FORMAT,
        streams,
        trees: {},
        meta: meta as unknown as Record<string, unknown>,
        size: 0,
        warnings: [],
      };
      try {
        const session = new PgRestoreSession(withDatabase(this.target, name), this.ctx, sub, this.options);
        this.sessions.push({ name, session });
        await session.stage();
      } catch (err) {
        throw inDatabase(name, err);
      }
    }
  }

  /** Each database swaps in on its own (atomic per database); one that fails stops the rest. */
  async commit(): Promise<void> {
    for (const { name, session } of this.sessions) {
      try {
        await session.commit();
      } catch (err) {
        const e = inDatabase(name, err);
        const done = this.committed.length ? ` (already restored: ${this.committed.join(', ')})` : '';
        throw new BunkerError(e.code, `${e.message}${done}`, { cause: e.cause, hint: e.hint, details: e.details });
      }
      this.committed.push(name);
    }
  }

  async abort(): Promise<void> {
    const errors: unknown[] = [];
    for (const { name, session } of this.sessions) {
      if (this.committed.includes(name)) continue;
      await session.abort().catch((err) => errors.push(inDatabase(name, err)));
    }
    if (errors.length) throw errors[0];
  }

  /**
   * Roles first, so every database's owners and grantees exist. Missing roles are created with their
   * attributes, password hash, settings and comment; existing roles are left exactly as they are
   * (never altered, never dropped). Memberships are granted where the role or the member is new.
   * One transaction: either every missing role is created or none is.
   */
  private async restoreRoles(): Promise<void> {
    const { log, repo } = this.ctx;
    const parts: Buffer[] = [];
    for await (const chunk of repo.readStream(this.artifact.streams[ROLES_STREAM]!)) parts.push(chunk as Buffer);
    const record = JSON.parse(Buffer.concat(parts).toString('utf8')) as RolesRecord;
    const client = await this.connectMaintenance();
    try {
      const { rows } = await client.query('SELECT rolname FROM pg_roles');
      const existing = new Set(rows.map((r) => r.rolname as string));
      const created = record.roles.filter((r) => !existing.has(r.name));
      if (!created.length) {
        log.info(`postgresql restore: all ${record.roles.length} roles of the backup exist; existing roles are left as they are`);
        return;
      }
      // Keep the password hashes out of the server's own log (superusers only; others can't create
      // roles with passwords of other users anyway, and get the server's refusal below).
      await client.query(`SET log_statement = 'none'; SET log_min_error_statement = 'panic'`).catch(() => {});
      await client.query('BEGIN');
      for (const role of created) {
        try {
          await client.query(createRoleSql(role));
          for (const entry of role.settings) {
            const eq = entry.indexOf('=');
            if (eq <= 0) continue;
            const name = entry.slice(0, eq);
            const value = entry.slice(eq + 1);
            const values = LIST_SETTINGS.has(name.toLowerCase()) ? splitSettingList(value) : [value];
            await client.query(`ALTER ROLE ${ident(role.name)} SET ${ident(name)} TO ${values.map(literal).join(', ')}`);
          }
          if (role.comment) await client.query(`COMMENT ON ROLE ${ident(role.name)} IS ${literal(role.comment)}`);
        } catch (err) {
          // The server's message never contains the statement, so no password hash reaches it.
          throw new BunkerError('engine', `creating role ${role.name} on ${this.target.display}: ${redact((err as Error).message)}`, {
            cause: err,
            hint: 'Connect as a superuser (creating roles needs CREATEROLE, and SUPERUSER for superuser roles), or create the role yourself.',
          });
        }
      }
      const isNew = new Set(created.map((r) => r.name));
      for (const m of record.memberships) {
        if (!isNew.has(m.role) && !isNew.has(m.member)) continue;
        await client.query(`GRANT ${ident(m.role)} TO ${ident(m.member)}${m.admin ? ' WITH ADMIN OPTION' : ''}`);
      }
      await client.query('COMMIT');
      log.info(
        `postgresql restore: created roles ${created.map((r) => r.name).join(', ')}; ${record.roles.length - created.length} existing roles are left as they are`,
      );
      if (!record.passwords) log.warn('postgresql restore: the backup holds no role passwords; the created roles have none');
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {});
      throw asBunkerError(err, 'engine', `postgresql restore: creating roles on ${this.target.display}`);
    } finally {
      await client.end().catch(() => {});
    }
  }

  /** The url's database, else postgres or template1 (the url's may be one the restore brings back). */
  private async connectMaintenance(): Promise<pg.Client> {
    let lastErr: unknown;
    for (const db of [...new Set([this.target.database, 'postgres', 'template1'])]) {
      try {
        return await connect(withDatabase(this.target, db));
      } catch (err) {
        lastErr = err;
      }
    }
    throw lastErr;
  }
}

function createRoleSql(r: RoleEntry): string {
  const flag = (on: boolean, name: string) => (on ? name : `NO${name}`);
  const opts = [
    flag(r.superuser, 'SUPERUSER'),
    flag(r.inherit, 'INHERIT'),
    flag(r.createRole, 'CREATEROLE'),
    flag(r.createDb, 'CREATEDB'),
    flag(r.login, 'LOGIN'),
    flag(r.replication, 'REPLICATION'),
    flag(r.bypassRls, 'BYPASSRLS'),
    `CONNECTION LIMIT ${Number(r.connectionLimit)}`,
  ];
  if (r.password !== null) opts.push(`PASSWORD ${literal(r.password)}`);
  if (r.validUntil !== null) opts.push(`VALID UNTIL ${literal(r.validUntil)}`);
  return `CREATE ROLE ${ident(r.name)} WITH ${opts.join(' ')}`;
}
