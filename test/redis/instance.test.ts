// Whole-instance backup and restore (no db index in the url) between throwaway servers: another
// environment, the diskless-sync delay not sat out, and the refusal when no spare db index exists.
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isBunkerError } from '../../src/core/errors.js';
import type { ServiceArtifact } from '../../src/repo/types.js';
import { createTestRepo, type TestRepo } from '../helpers/repo.js';
import { fillEveryType } from './fill.js';
import { backup, client, dumpDb, restore, startThrowaway, type Throwaway } from './helpers.js';

describe('redis whole-instance backup and restore (throwaway servers)', () => {
  let t: TestRepo;
  let source: Throwaway;
  let target: Throwaway;
  let artifact: ServiceArtifact;

  beforeAll(async () => {
    t = await createTestRepo();
    // A long delay makes any wait for it obvious.
    source = await startThrowaway(['--repl-diskless-sync-delay', '30']);
    target = await startThrowaway();
  });
  afterAll(async () => {
    await Promise.allSettled([source?.stop(), target?.stop()]);
    await t.cleanup();
  });

  it('backs up every db without waiting out repl-diskless-sync-delay, and sets it back', async () => {
    const db0 = client(0, source.port);
    const db3 = client(3, source.port);
    await fillEveryType(db0);
    await db3.set('in-db-3', 'three');
    await db3.sadd('set-in-3', 'x', 'y');
    const started = Date.now();
    artifact = await backup(t.repo, source.url);
    const elapsed = Date.now() - started;
    expect(elapsed).toBeLessThan(15_000);
    expect(await db0.config('GET', 'repl-diskless-sync-delay')).toEqual(['repl-diskless-sync-delay', '30']);
    expect(artifact.meta.db).toBe(null);
    expect(artifact.meta.dbs).toEqual({ '0': await db0.dbsize(), '3': 2 });
    db0.disconnect();
    db3.disconnect();
  });

  it('restores the instance onto another server: same dbs, others emptied', async () => {
    const s0 = client(0, source.port);
    const s3 = client(3, source.port);
    const d0 = client(0, target.port);
    const d3 = client(3, target.port);
    const d5 = client(5, target.port);
    await d0.set('junk', '1');
    await d5.set('junk-in-5', '1');
    await restore(t.repo, target.url, artifact);
    expect(await dumpDb(d0)).toEqual(await dumpDb(s0));
    expect(await dumpDb(d3)).toEqual(await dumpDb(s3));
    expect(await d5.dbsize()).toBe(0);
    for (const c of [s0, s3, d0, d3, d5]) c.disconnect();
  });

  it('restores one db of a whole-instance backup into another db index', async () => {
    const d7 = client(7, target.port);
    await restore(t.repo, `${target.url}/7`, artifact);
    // The whole-instance backup has no db 7: the restored db 7 is empty; db 3 into 7 needs the url of 3.
    expect(await d7.dbsize()).toBe(0);
    const single = await backup(t.repo, `${source.url}/3`);
    expect(single.meta.dbs).toEqual({ '3': 2 });
    await restore(t.repo, `${target.url}/7`, single);
    expect(await d7.get('in-db-3')).toBe('three');
    expect(await d7.dbsize()).toBe(2);
    d7.disconnect();
  });

  it('authenticates with the password in the url and never shows it in errors', async () => {
    const locked = await startThrowaway(['--requirepass', 'pw-Secret-42']);
    try {
      const c = new Redis({ port: locked.port, host: '127.0.0.1', password: 'pw-Secret-42', db: 2 });
      await c.set('guarded', 'value');
      const url = `redis://:pw-Secret-42@127.0.0.1:${locked.port}`;
      const art = await backup(t.repo, `${url}/2`);
      await restore(t.repo, `${url}/4`, art);
      await c.select(4);
      expect(await c.get('guarded')).toBe('value');
      c.disconnect();
      const err = await backup(t.repo, `redis://:wrong-Secret-99@127.0.0.1:${locked.port}/2`).then(
        () => null,
        (e: unknown) => e,
      );
      expect(isBunkerError(err, 'unreachable'), String(err)).toBe(true);
      expect((err as Error).message).toMatch(/authentication failed/);
      expect((err as Error).message).not.toContain('wrong-Secret-99');
    } finally {
      await locked.stop();
    }
  });

  it('refuses a restore when the server has no spare db index, and changes nothing', async () => {
    const lone = await startThrowaway(['--databases', '1']);
    try {
      const c = client(0, lone.port);
      await c.set('keep', 'me');
      const db0 = await backup(t.repo, `${source.url}/0`);
      const err = await restore(t.repo, lone.url, db0).then(
        () => null,
        (e: unknown) => e,
      );
      expect(isBunkerError(err, 'engine'), String(err)).toBe(true);
      expect((err as Error).message).toMatch(/no empty spare db index/);
      expect(await c.get('keep')).toBe('me');
      expect(await c.dbsize()).toBe(1);
      c.disconnect();
    } finally {
      await lone.stop();
    }
  });
});
