import { z } from 'zod';
import { describe, expect, it } from 'vitest';
import { isBunkerError } from '../../core/errors.js';
import { silentLogger } from '../../core/log.js';
import { redisEngine } from './index.js';

const env = { configDir: '/tmp', stateDir: '/tmp', log: silentLogger };

describe('redis engine descriptor', () => {
  it('validates its config', () => {
    expect(redisEngine.configSchema(z).safeParse({ url: 'redis://127.0.0.1:6379/2', spare_db: 9 }).success).toBe(true);
    expect(redisEngine.configSchema(z).safeParse({}).success).toBe(false);
    expect(redisEngine.configSchema(z).safeParse({ url: 'postgres://x' }).success).toBe(false);
    expect(redisEngine.configSchema(z).safeParse({ url: 'redis://h', spare_db: -1 }).success).toBe(false);
    expect(redisEngine.configSchema(z).safeParse({ url: 'redis://h', sparedb: 3 }).success).toBe(false);
  });

  it('refuses a spare_db equal to the db it restores into', () => {
    try {
      redisEngine.create('cache', { url: 'redis://127.0.0.1:6379/4', spare_db: 4 }, env);
      expect.unreachable();
    } catch (err) {
      expect(isBunkerError(err, 'config_invalid')).toBe(true);
    }
  });

  it('probes the real server and reports an unreachable one clearly', async () => {
    const ok = await redisEngine.create('cache', { url: 'redis://127.0.0.1:6379/2' }, env).probe();
    expect(ok.version).toMatch(/^Redis \d+\.\d+/);
    const down = redisEngine.create('cache', { url: 'redis://user:s3cretpw@127.0.0.1:1/2' }, env);
    const err = await down.probe().then(
      () => null,
      (e: unknown) => e,
    );
    expect(isBunkerError(err, 'unreachable')).toBe(true);
    expect((err as Error).message).not.toContain('s3cretpw');
  });
});
