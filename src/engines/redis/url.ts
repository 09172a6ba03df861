// redis:// and rediss:// URLs → connection settings. The password never leaves this object except
// on the wire (AUTH); messages use redactUrl().
import { BunkerError } from '../../core/errors.js';
import { redactUrl } from '../../core/redact.js';

export interface RedisTarget {
  host: string;
  port: number;
  tls: boolean;
  username?: string;
  password?: string;
  /** The logical database named in the URL path; null means the whole instance. */
  db: number | null;
  /** The URL with its password masked, for messages. */
  display: string;
}

export function parseRedisUrl(url: string): RedisTarget {
  const display = redactUrl(url);
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new BunkerError('config_invalid', `redis url "${display}" is not a URL`, {
      hint: 'Write it as redis://[user:password@]host:port[/db] or rediss:// for TLS.',
    });
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') {
    throw new BunkerError('config_invalid', `redis url "${display}" must start with redis:// or rediss://`, {
      hint: 'Write it as redis://[user:password@]host:port[/db].',
    });
  }
  const path = u.pathname.replace(/^\/+|\/+$/g, '');
  let db: number | null = null;
  if (path !== '') {
    if (!/^\d+$/.test(path)) {
      throw new BunkerError('config_invalid', `redis url "${display}": the path "/${path}" is not a db index`, {
        hint: 'Use a number such as redis://host:6379/2, or no path for the whole instance.',
      });
    }
    db = Number(path);
  }
  const host = u.hostname.replace(/^\[|\]$/g, '') || '127.0.0.1';
  const target: RedisTarget = { host, port: u.port ? Number(u.port) : 6379, tls: u.protocol === 'rediss:', db, display };
  if (u.username) target.username = decodeURIComponent(u.username);
  if (u.password) target.password = decodeURIComponent(u.password);
  return target;
}
