import { describe, expect, it } from 'vitest';
import { isBunkerError } from '../../core/errors.js';
import { parseRedisUrl } from './url.js';

describe('parseRedisUrl', () => {
  it('reads host, port, db, user, password and TLS', () => {
    const t = parseRedisUrl('rediss://app:s%40cret@cache.internal:6380/4');
    expect(t).toMatchObject({ host: 'cache.internal', port: 6380, tls: true, db: 4, username: 'app', password: 's@cret' });
    expect(t.display).not.toContain('cret');
    expect(parseRedisUrl('redis://127.0.0.1')).toMatchObject({ port: 6379, db: null, tls: false });
    expect(parseRedisUrl('redis://:pw@[::1]:7000/')).toMatchObject({ host: '::1', port: 7000, db: null, password: 'pw' });
  });

  it('refuses other schemes and db paths that are not numbers, without echoing the password', () => {
    for (const bad of ['http://h:1', 'redis://u:hunter22@h/abc', 'not a url']) {
      try {
        parseRedisUrl(bad);
        expect.unreachable();
      } catch (err) {
        expect(isBunkerError(err, 'config_invalid')).toBe(true);
        expect((err as Error).message).not.toContain('hunter22');
      }
    }
  });
});
