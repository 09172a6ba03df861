// Shared pieces of the redis engine tests: contexts, a throwaway redis-server, and a full logical
// dump of a db (values, encodings, expiry in ms) to compare a restore with its source.
import { z } from 'zod';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll } from 'vitest';
import { createTestRepo, type TestRepo } from '../helpers/repo.js';
import { runBackup, runRestore, type BackupContext, type RestoreContext } from '../../src/engines/engine.js';
import { silentLogger } from '../../src/core/log.js';
import { redisEngine } from '../../src/engines/redis/index.js';
import type { Repository, ServiceArtifact } from '../../src/repo/types.js';

export const SHARED = 'redis://127.0.0.1:6379';

export function backupCtx(repo: Repository): BackupContext {
  return { repo, log: silentLogger, progress() {}, signal: new AbortController().signal, mode: 'live' };
}

export function restoreCtx(repo: Repository): RestoreContext {
  return { repo, log: silentLogger, progress() {}, signal: new AbortController().signal, options: {} };
}

export function engine(url: string, spare_db?: number) {
  const config = redisEngine.configSchema(z).parse(spare_db === undefined ? { url } : { url, spare_db });
  return redisEngine.create('cache', config, { configDir: '/tmp', stateDir: '/tmp', log: silentLogger });
}

export async function backup(repo: Repository, url: string): Promise<ServiceArtifact> {
  const e = engine(url);
  return runBackup(await e.openBackup(backupCtx(repo)));
}

export async function restore(repo: Repository, url: string, artifact: ServiceArtifact, spare_db?: number): Promise<void> {
  const e = engine(url, spare_db);
  await runRestore(await e.openRestore(restoreCtx(repo), artifact));
}

export function client(db: number, port = 6379): Redis {
  return new Redis({ host: '127.0.0.1', port, db, lazyConnect: false, maxRetriesPerRequest: 1 });
}

/**
 * Clients for a source, target and spare db index on the shared server, plus a test repository:
 * the three dbs are emptied before and after the suite (call at describe level).
 */
export function useDbTrio(source: number, target: number, spareDb: number) {
  const trio = { src: client(source), dst: client(target), spare: client(spareDb), t: undefined as unknown as TestRepo };
  const flush = () => Promise.all([trio.src.flushdb(), trio.dst.flushdb(), trio.spare.flushdb()]);
  beforeAll(async () => {
    trio.t = await createTestRepo();
    await flush();
  });
  afterAll(async () => {
    await flush();
    for (const c of [trio.src, trio.dst, trio.spare]) c.disconnect();
    await trio.t.cleanup();
  });
  return trio;
}

/** A redis-server of our own on a free port, for whole-instance tests. */
export interface Throwaway {
  port: number;
  url: string;
  stop(): Promise<void>;
}

export async function startThrowaway(extra: string[] = []): Promise<Throwaway> {
  const dir = await mkdtemp(join(tmpdir(), 'bunker-redis-'));
  const passwordAt = extra.indexOf('--requirepass');
  const password = passwordAt >= 0 ? extra[passwordAt + 1] : undefined;
  for (let attempt = 0; attempt < 20; attempt++) {
    const port = 6390 + Math.floor(Math.random() * 500);
    const proc: ChildProcess = spawn(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, ...extra],
      { stdio: 'ignore' },
    );
    const ok = await new Promise<boolean>((resolve) => {
      let exited = false;
      proc.once('exit', () => ((exited = true), resolve(false)));
      const started = Date.now();
      const tryPing = () => {
        if (exited) return;
        const c = new Redis({ port, host: '127.0.0.1', password, lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 });
        c.on('error', () => {});
        c.connect()
          .then(() => c.info('server'))
          // Another process may own the port (ours then exits): only our own pid counts.
          .then((info) => (c.disconnect(), resolve(info.includes(`process_id:${proc.pid}\r\n`))))
          .catch(() => {
            c.disconnect();
            if (Date.now() - started > 10_000) resolve(false);
            else setTimeout(tryPing, 50);
          });
      };
      tryPing();
    });
    if (ok) {
      return {
        port,
        url: `redis://127.0.0.1:${port}`,
        async stop() {
          await new Promise<void>((resolve) => {
            if (proc.exitCode !== null) return resolve();
            proc.once('exit', () => resolve());
            proc.kill('SIGTERM');
          });
          await rm(dir, { recursive: true, force: true });
        },
      };
    }
    proc.kill('SIGKILL');
  }
  await rm(dir, { recursive: true, force: true });
  throw new Error('could not start a throwaway redis-server');
}

type Dumped = { type: string; encoding: string; expireMs: number; value: unknown };

/** Every key of the client's db with its type, encoding, absolute expiry (ms) and value. */
export async function dumpDb(r: Redis): Promise<Map<string, Dumped>> {
  const out = new Map<string, Dumped>();
  let cursor = '0';
  const keys: Buffer[] = [];
  do {
    const [next, batch] = (await r.callBuffer('SCAN', [cursor, 'COUNT', '1000'])) as [Buffer, Buffer[]];
    cursor = next.toString();
    keys.push(...batch);
  } while (cursor !== '0');
  const hex = (b: Buffer) => b.toString('hex');
  const pairs = (arr: Buffer[]) => {
    const res: string[] = [];
    for (let i = 0; i < arr.length; i += 2) res.push(`${hex(arr[i]!)}=${hex(arr[i + 1]!)}`);
    return res.sort();
  };
  for (const key of keys) {
    const type = String(await r.call('TYPE', key));
    // embstr and raw are one RDB encoding; the server picks between them by length when loading.
    const encoding = String(await r.call('OBJECT', 'ENCODING', key)).replace(/^embstr$/, 'raw');
    const expireMs = Number(await r.call('PEXPIRETIME', key));
    let value: unknown;
    switch (type) {
      case 'string':
        value = hex((await r.getBuffer(key))!);
        break;
      case 'list':
        value = ((await r.lrangeBuffer(key, 0, -1)) as Buffer[]).map(hex);
        break;
      case 'set':
        value = ((await r.smembersBuffer(key)) as Buffer[]).map(hex).sort();
        break;
      case 'zset':
        value = (await r.call('ZRANGE', key, '0', '-1', 'WITHSCORES')) as string[];
        break;
      case 'hash':
        value = pairs((await r.callBuffer('HGETALL', [key])) as Buffer[]);
        break;
      case 'stream': {
        const info = (await r.call('XINFO', 'STREAM', key, 'FULL')) as unknown[];
        value = info;
        break;
      }
      default:
        throw new Error(`unexpected type ${type}`);
    }
    out.set(hex(key), { type, encoding, expireMs, value });
  }
  return out;
}

/** Deterministic pseudo-random bytes. */
export { prngBytes as bytes } from '../helpers/random.js';
