// The settings a backup changes for the moment of the fork (repl-diskless-sync-delay, rdbcompression):
// what the snapshot looks like with and without LZF, that both restore, and that the server gets its
// own values back after success and after failure.
import { z } from 'zod';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isBunkerError } from '../../src/core/errors.js';
import { runBackup } from '../../src/engines/engine.js';
import { silentLogger } from '../../src/core/log.js';
import { redisEngine } from '../../src/engines/redis/index.js';
import { createTestRepo, type TestRepo } from '../helpers/repo.js';
import { backupCtx, client, dumpDb, restore, startThrowaway, type Throwaway } from './helpers.js';

/** 600 bytes of one letter: LZF shrinks it to a few dozen, so the stored RDB shows which way it was written. */
const COMPRESSIBLE = 'v'.repeat(600);

function backupWith(t: TestRepo, url: string, rdbcompression?: 'off' | 'server') {
  const config = redisEngine.configSchema(z).parse(rdbcompression ? { url, rdbcompression } : { url });
  const engine = redisEngine.create('cache', config, { configDir: '/tmp', stateDir: '/tmp', log: silentLogger });
  return engine.openBackup(backupCtx(t.repo)).then((s) => runBackup(s));
}

describe('redis backup: server settings for the fork (throwaway servers)', () => {
  let t: TestRepo;
  let source: Throwaway;
  let target: Throwaway;
  let src: Redis;

  beforeAll(async () => {
    t = await createTestRepo();
    source = await startThrowaway(['--repl-diskless-sync-delay', '30', '--rdbcompression', 'yes']);
    target = await startThrowaway();
    src = client(0, source.port);
    await src.set('plain', COMPRESSIBLE);
    await src.set('with-ttl', COMPRESSIBLE + 'x', 'PX', 3_600_000);
    await src.hset('hash', 'f', COMPRESSIBLE);
    await src.rpush('list', COMPRESSIBLE, 'b', 'c');
    await src.set('n', '12345');
  });
  afterAll(async () => {
    src?.disconnect();
    await Promise.allSettled([source?.stop(), target?.stop()]);
    await t.cleanup();
  });

  async function settings(): Promise<[string, string]> {
    const delay = (await src.config('GET', 'repl-diskless-sync-delay')) as string[];
    const compression = (await src.config('GET', 'rdbcompression')) as string[];
    return [delay[1]!, compression[1]!];
  }

  it('by default the snapshot is written without LZF, restores, and the server keeps its settings', async () => {
    const artifact = await backupWith(t, source.url);
    expect(await settings()).toEqual(['30', 'yes']);
    const rdb = await t.repo.readBuffer(artifact.streams.rdb!);
    expect(rdb.includes(COMPRESSIBLE)).toBe(true);
    await restore(t.repo, target.url, artifact);
    const dst = client(0, target.port);
    expect(await dumpDb(dst)).toEqual(await dumpDb(src));
    dst.disconnect();
  });

  it('with rdbcompression: server the snapshot is LZF-compressed as the server has it, and restores', async () => {
    const artifact = await backupWith(t, source.url, 'server');
    expect(await settings()).toEqual(['30', 'yes']);
    const rdb = await t.repo.readBuffer(artifact.streams.rdb!);
    expect(rdb.includes(COMPRESSIBLE)).toBe(false);
    const dst = client(0, target.port);
    await dst.flushall();
    await restore(t.repo, target.url, artifact);
    expect(await dumpDb(dst)).toEqual(await dumpDb(src));
    dst.disconnect();
  });

  it('with disk-based sync ($<length> framing) changes nothing: the fork also writes the server its own dump', async () => {
    const disk = await startThrowaway(['--repl-diskless-sync', 'no', '--rdbcompression', 'yes']);
    try {
      const c = client(0, disk.port);
      await c.set('plain', COMPRESSIBLE);
      await c.hset('hash', 'f', COMPRESSIBLE);
      const artifact = await backupWith(t, disk.url);
      expect((await c.config('GET', 'rdbcompression')) as string[]).toEqual(['rdbcompression', 'yes']);
      expect(artifact.meta.keys).toBe(2);
      const rdb = await t.repo.readBuffer(artifact.streams.rdb!);
      expect(rdb.includes(COMPRESSIBLE)).toBe(false);
      const dst = client(0, target.port);
      await dst.flushall();
      await restore(t.repo, target.url, artifact);
      expect(await dumpDb(dst)).toEqual(await dumpDb(c));
      dst.disconnect();
      c.disconnect();
    } finally {
      await disk.stop();
    }
  });

  it('sets both settings back when the server refuses the snapshot', async () => {
    // A user that may change settings but not replicate: the PSYNC after CONFIG SET fails.
    await src.call('ACL', 'SETUSER', 'noreplica', 'on', '>pw-Noreplica-1', '~*', '+@all', '-psync', '-sync');
    const err = await backupWith(t, `redis://noreplica:pw-Noreplica-1@127.0.0.1:${source.port}`).then(
      () => null,
      (e: unknown) => e,
    );
    expect(isBunkerError(err, 'engine'), String(err)).toBe(true);
    expect((err as Error).message).toMatch(/refused to send a snapshot/);
    expect(await settings()).toEqual(['30', 'yes']);
  });
});
