// Connection settings from the service URL, and the one place mysql2 errors become BunkerErrors
// (so a URL with a password never reaches a message).
import type { Connection } from 'mysql2/promise';
import { BunkerError, type ErrorCode } from '../../core/errors.js';
import { redact, redactUrl, registerSecret } from '../../core/redact.js';
import { rowSocket } from './result-reader.js';

export interface Target {
  host: string;
  port: number;
  user: string;
  password: string;
  socketPath?: string;
  database: string;
}

/** Parses mysql://user:pass@host:port/db (also mariadb://); throws config_invalid saying what is wrong. */
export function parseUrl(url: string): Target {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new BunkerError('config_invalid', `mariadb url is not a valid URL: ${redactUrl(url)}`, {
      hint: 'Write it as mysql://user:password@host:3306/database.',
    });
  }
  if (u.protocol !== 'mysql:' && u.protocol !== 'mariadb:') {
    throw new BunkerError('config_invalid', `mariadb url must start with mysql:// or mariadb://, not ${u.protocol}//`, {
      hint: 'Write it as mysql://user:password@host:3306/database.',
    });
  }
  const database = decodeURIComponent(u.pathname.replace(/^\//, ''));
  if (!database || database.includes('/')) {
    throw new BunkerError('config_invalid', `mariadb url ${redactUrl(url)} does not name one database`, {
      hint: 'Add the database after the host: mysql://user@host:3306/shop.',
    });
  }
  const password = decodeURIComponent(u.password);
  registerSecret(password);
  const socketPath = u.searchParams.get('socket') ?? undefined;
  return {
    host: u.hostname || '127.0.0.1',
    port: u.port ? Number(u.port) : 3306,
    user: decodeURIComponent(u.username) || 'root',
    password,
    ...(socketPath ? { socketPath } : {}),
    database,
  };
}

/** "Got error N during COMMIT": a storage engine refused a transaction's changes as it committed. */
const ER_ERROR_DURING_COMMIT = 1180;

/** Wraps a mysql2 (or other) error with what we were doing; the message is redacted. */
export function engineError(err: unknown, doing: string, code: ErrorCode = 'engine'): BunkerError {
  if (err instanceof BunkerError) return err;
  const e = err as { message?: string; code?: string; errno?: number };
  const text = redact(e?.message ?? String(err));
  const unreachable = ['ECONNREFUSED', 'ENOTFOUND', 'ETIMEDOUT', 'EHOSTUNREACH', 'ECONNRESET'].includes(e?.code ?? '');
  return new BunkerError(unreachable ? 'unreachable' : code, `mariadb: ${doing}: ${text}`, {
    cause: err,
    hint: unreachable
      ? 'Check that the MariaDB server is running and the url host and port are right.'
      : e?.code === 'ER_ACCESS_DENIED_ERROR' || e?.code === 'ER_DBACCESS_DENIED_ERROR'
        ? 'Check the user and password in the url, and that the user has the privileges backups need (SELECT, RELOAD, LOCK TABLES, SHOW VIEW, EVENT, TRIGGER).'
        : e?.code === 'ER_BAD_DB_ERROR'
          ? 'Check the database name at the end of the url; it must exist on the server.'
          : e?.errno === ER_ERROR_DURING_COMMIT
            ? // A restore's loads use the bulk-insert path (unique_checks off), which reports a duplicate key this way.
              'When MariaDB bulk-loads a table, this is how it reports a duplicate key: two of the rows collide on a unique key ' +
              "(in a restore, for example because the target server's collation compares them as equal). The target is unchanged."
            : undefined,
    details: { mysqlCode: e?.code, errno: e?.errno },
  });
}

/**
 * Opens one connection. Every session runs in UTC so TIMESTAMP values travel unchanged, and with
 * utf8mb4 so names and definitions with 4-byte characters survive. `rows`: a connection the backup
 * reads result sets from with readResultSet(), over a socket that reuses its read buffer.
 */
export async function connect(t: Target, options: { database?: string | null; doing?: string; rows?: boolean } = {}): Promise<Connection> {
  try {
    // Loaded on first use: the driver is a tenth of a second of every CLI command's start-up otherwise.
    // Through `default` (module.exports): mysql2 is CommonJS, and the bundled build gives an import()
    // of it no named exports.
    const { createConnection } = (await import('mysql2/promise')).default;
    const conn = await createConnection({
      ...(options.rows ? { stream: rowSocket(t) } : {}),
      host: t.host,
      port: t.port,
      user: t.user,
      password: t.password,
      ...(t.socketPath ? { socketPath: t.socketPath } : {}),
      ...(options.database === null ? {} : { database: options.database ?? t.database }),
      charset: 'UTF8MB4_GENERAL_CI',
      timezone: 'Z',
      supportBigNumbers: true,
      bigNumberStrings: true,
      dateStrings: true,
      multipleStatements: false,
      connectTimeout: 10_000,
    });
    await conn.query("SET SESSION time_zone = '+00:00'");
    return conn;
  } catch (err) {
    throw engineError(err, options.doing ?? `connecting to ${t.host}:${t.port}`);
  }
}

/** `name` quoted as an identifier. */
export function q(name: string): string {
  return '`' + name.replace(/`/g, '``') + '`';
}
