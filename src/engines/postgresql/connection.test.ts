import { z } from 'zod';
import { describe, expect, it } from 'vitest';
import { isBunkerError } from '../../core/errors.js';
import { silentLogger } from '../../core/log.js';
import { parsePgUrl, toolEnv, withDatabase } from './connection.js';
import { postgresqlEngine } from './index.js';
import { splitSettingList } from './restore.js';

describe('postgresql connection settings', () => {
  it('parses a URL into parts and keeps the password out of the display form', () => {
    const t = parsePgUrl('postgresql://app%40x:s3cr%3Aet@db.example:6543/my%20db?sslmode=require&application_name=bk');
    expect(t).toMatchObject({ host: 'db.example', port: 6543, user: 'app@x', password: 's3cr:et', database: 'my db' });
    expect(t.display).not.toContain('s3cr');
    const env = toolEnv(t);
    expect(env).toMatchObject({ PGHOST: 'db.example', PGPORT: '6543', PGUSER: 'app@x', PGPASSWORD: 's3cr:et', PGDATABASE: 'my db', PGSSLMODE: 'require', PGAPPNAME: 'bk' });
  });

  it('takes a socket directory from ?host=', () => {
    expect(parsePgUrl('postgresql:///db?host=/var/run/postgresql').host).toBe('/var/run/postgresql');
  });

  it('rejects URLs without a database or of another scheme, without echoing the password', () => {
    for (const url of ['postgresql://u:hunter22@h:5432/', 'mysql://u:hunter22@h/db', 'not a url']) {
      let err: unknown;
      try {
        parsePgUrl(url);
      } catch (e) {
        err = e;
      }
      expect(isBunkerError(err, 'config_invalid'), url).toBe(true);
      expect((err as Error).message).not.toContain('hunter22');
    }
  });

  it('names the other database in messages, still without the password', () => {
    const t = withDatabase(parsePgUrl('postgresql://app:s3cret@db.example:6543/postgres?sslmode=require'), 'shop eu');
    expect(t.database).toBe('shop eu');
    expect(t.display).toContain('/shop%20eu?sslmode=require');
    expect(t.display).not.toContain('s3cret');
    expect(t.password).toBe('s3cret');
  });

  it('takes databases: all, refuses other values and unknown keys in the config', () => {
    const schema = postgresqlEngine.configSchema(z);
    expect(schema.safeParse({ url: 'postgresql://h/db', databases: 'all' }).success).toBe(true);
    expect(schema.safeParse({ url: 'postgresql://h/db', databases: 'some' }).success).toBe(false);
    expect(schema.safeParse({ url: 'postgresql://h/db', job: 3 }).success).toBe(false);
    expect(schema.safeParse({ url: 'postgresql://h/db', jobs: 3, no_owner: true }).success).toBe(true);
  });

  it('reports an unreachable server with a hint and without the password', async () => {
    const engine = postgresqlEngine.create('db', { url: 'postgresql://postgres:pa55word-x@127.0.0.1:1/none' }, {
      configDir: '/tmp',
      stateDir: '/tmp',
      log: silentLogger,
    });
    const err = await engine.probe().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isBunkerError(err, 'unreachable')).toBe(true);
    expect((err as Error).message).not.toContain('pa55word-x');
    expect((err as { hint?: string }).hint).toMatch(/server is running/);
  });
});

describe('splitSettingList', () => {
  it('splits list settings the way PostgreSQL stores them', () => {
    expect(splitSettingList('"$user", public')).toEqual(['$user', 'public']);
    expect(splitSettingList('"a ""b""",x y , "c,d"')).toEqual(['a "b"', 'x y', 'c,d']);
    expect(splitSettingList('single')).toEqual(['single']);
  });
});
