// How the engine reaches a server: one parsed URL turned into pg client options (for our own
// connections) and libpq environment variables (for pg_dump/pg_restore/psql), so the password never
// appears on a command line, in `ps`, in logs or in errors.
import type pg from 'pg';
import { BunkerError } from '../../core/errors.js';
import { redactUrl } from '../../core/redact.js';

export interface PgTarget {
  host: string;
  port: number;
  user: string;
  password: string | undefined;
  database: string;
  /** libpq parameters from the URL's query string (sslmode, sslrootcert, application_name, ...). */
  params: Record<string, string>;
  /** The URL with its password masked, for messages. */
  display: string;
}

// libpq connection parameters that have an environment-variable twin the tools understand.
const ENV_FOR_PARAM: Record<string, string> = {
  sslmode: 'PGSSLMODE',
  sslcert: 'PGSSLCERT',
  sslkey: 'PGSSLKEY',
  sslrootcert: 'PGSSLROOTCERT',
  application_name: 'PGAPPNAME',
  connect_timeout: 'PGCONNECT_TIMEOUT',
  options: 'PGOPTIONS',
};

export function parsePgUrl(url: string): PgTarget {
  const display = redactUrl(url);
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new BunkerError('config_invalid', `postgresql url is not a valid URL: ${display}`, {
      hint: 'Use postgresql://user:password@host:5432/database.',
    });
  }
  if (parsed.protocol !== 'postgresql:' && parsed.protocol !== 'postgres:') {
    throw new BunkerError('config_invalid', `postgresql url must start with postgresql:// (got ${parsed.protocol}//)`, {
      hint: 'Use postgresql://user:password@host:5432/database.',
    });
  }
  const database = decodeURIComponent(parsed.pathname.replace(/^\//, ''));
  if (!database) {
    throw new BunkerError('config_invalid', `postgresql url names no database: ${display}`, {
      hint: 'Add the database name to the path: postgresql://user@host:5432/mydb.',
    });
  }
  const params: Record<string, string> = {};
  for (const [k, v] of parsed.searchParams) params[k] = v;
  // A socket directory may come as ?host=/var/run/postgresql with an empty URL host.
  const host = params.host ?? (decodeURIComponent(parsed.hostname) || 'localhost');
  delete params.host;
  return {
    host,
    port: parsed.port ? Number(parsed.port) : 5432,
    user: decodeURIComponent(parsed.username) || 'postgres',
    password: parsed.password ? decodeURIComponent(parsed.password) : undefined,
    database,
    params,
    display,
  };
}

/** The same server, another database (messages name it). */
export function withDatabase(target: PgTarget, database: string): PgTarget {
  let display: string;
  try {
    const u = new URL(target.display);
    u.pathname = `/${encodeURIComponent(database)}`;
    display = u.toString();
  } catch {
    display = `${target.display} (database ${database})`;
  }
  return { ...target, database, display };
}

/** Options for `new pg.Client(...)`. */
export function clientConfig(target: PgTarget) {
  const ssl = target.params.sslmode && !['disable', 'allow', 'prefer'].includes(target.params.sslmode);
  return {
    host: target.host,
    port: target.port,
    user: target.user,
    password: target.password,
    database: target.database,
    application_name: target.params.application_name ?? 'bunker',
    ...(ssl ? { ssl: { rejectUnauthorized: target.params.sslmode === 'verify-full' } } : {}),
  };
}

/** Environment for libpq tools; the caller passes the database with -d. */
export function toolEnv(target: PgTarget, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  // Don't let the caller's own libpq settings leak into the tools' connections.
  for (const key of Object.keys(env)) if (key.startsWith('PG')) delete env[key];
  env.PGHOST = target.host;
  env.PGPORT = String(target.port);
  env.PGUSER = target.user;
  env.PGDATABASE = target.database;
  if (target.password !== undefined) env.PGPASSWORD = target.password;
  else env.PGPASSFILE ??= process.env.PGPASSFILE;
  for (const [param, value] of Object.entries(target.params)) {
    const name = ENV_FOR_PARAM[param];
    if (name) env[name] = value;
  }
  env.PGAPPNAME ??= 'bunker';
  return { ...env, ...extra };
}

/** A quoted SQL identifier (for names that may need quoting: databases, roles). */
export const ident = (name: string): string => `"${name.replace(/"/g, '""')}"`;
/** A quoted SQL string literal (standard_conforming_strings, the default since PostgreSQL 9.1). */
export const literal = (s: string): string => `'${s.replace(/'/g, "''")}'`;

/**
 * The pg driver's Client class, loaded on first use: parsing a service's url (every CLI command that
 * reads the config) then doesn't load the driver, a tenth of a second of start-up.
 */
export async function pgClient(): Promise<typeof pg.Client> {
  return (await import('pg')).default.Client;
}

/** A connected client; a server that can't be reached is an `unreachable` error naming it (never the password). */
export async function connect(target: PgTarget): Promise<pg.Client> {
  const client = new (await pgClient())(clientConfig(target));
  client.on('error', () => {}); // a dropped connection surfaces on the next query
  try {
    await client.connect();
    return client;
  } catch (err) {
    await client.end().catch(() => {});
    throw new BunkerError('unreachable', `cannot connect to PostgreSQL at ${target.display}: ${(err as Error).message}`, {
      cause: err,
      hint: 'Check that the server is running and the url (host, port, user, database) is right.',
    });
  }
}

/**
 * `n` connections, each set up with `setup` (one simple query: settings, a transaction). None is left
 * open when one fails; the first failure is thrown.
 */
export async function openSessions(target: PgTarget, n: number, setup: string): Promise<pg.Client[]> {
  const Client = await pgClient();
  const opened = await Promise.allSettled(
    Array.from({ length: n }, async () => {
      const client = new Client(clientConfig(target));
      client.on('error', () => {}); // a dropped connection fails the running query
      try {
        await client.connect();
        await client.query(setup);
        return client;
      } catch (err) {
        await client.end().catch(() => {});
        throw err;
      }
    }),
  );
  const clients = opened.flatMap((o) => (o.status === 'fulfilled' ? [o.value] : []));
  const failed = opened.find((o): o is PromiseRejectedResult => o.status === 'rejected');
  if (failed) {
    await Promise.all(clients.map((c) => c.end().catch(() => {})));
    throw failed.reason;
  }
  return clients;
}
