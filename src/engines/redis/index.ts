// The redis engine: point-in-time backups over the replication protocol (no disk access) and
// atomic restores into a running server through a spare db index and SWAPDB.
// See docs/design/engine-redis.md.
import type { z } from 'zod';
import { BunkerError } from '../../core/errors.js';
import type { Engine, EngineDescriptor, EngineEnv } from '../engine.js';
import { RedisBackupSession } from './backup.js';
import { RedisRestoreSession } from './restore.js';
import { RespConnection, replyText } from './resp.js';
import { parseRedisUrl } from './url.js';

export const redisConfigSchema = (zod: typeof z) =>
  zod
    .object({
      url: zod.string().regex(/^rediss?:\/\//, 'must be a redis:// or rediss:// url'),
      /** An empty db index to stage single-db restores in; by default the highest empty index is used. */
      spare_db: zod.number().int().min(0).optional(),
      /**
       * off (default): the server's rdbcompression is turned off for the moment of the backup's fork, so
       * its child does not LZF-compress the snapshot; server: left as the server has it (a slow link).
       */
      rdbcompression: zod.enum(['off', 'server']).optional(),
    })
    .strict();

export type RedisConfig = z.infer<ReturnType<typeof redisConfigSchema>>;

export function createRedisEngine(name: string, config: RedisConfig, env: EngineEnv): Engine {
  const target = parseRedisUrl(config.url);
  if (config.spare_db !== undefined && config.spare_db === target.db) {
    throw new BunkerError('config_invalid', `redis service ${name}: spare_db ${config.spare_db} is the db the url names`, {
      hint: 'Choose an empty db index the application does not use.',
    });
  }
  return {
    type: 'redis',
    async probe() {
      const conn = await RespConnection.connect(target, { db: null });
      try {
        const info = replyText(await conn.command(['INFO', 'server']));
        const memory = replyText(await conn.command(['INFO', 'memory']));
        const version = /redis_version:([^\r\n]+)/.exec(info)?.[1];
        if (!version) throw new BunkerError('engine', `redis service ${name}: ${target.display} did not report a version`);
        const used = Number(/used_memory_dataset:(\d+)/.exec(memory)?.[1] ?? NaN);
        return {
          version: `Redis ${version}`,
          ...(Number.isFinite(used) ? { sizeEstimate: used } : {}),
          details: { db: target.db },
        };
      } finally {
        conn.close();
      }
    },
    async openBackup(ctx) {
      return new RedisBackupSession(name, target, ctx, config.rdbcompression ?? 'off');
    },
    async openRestore(ctx, artifact) {
      return new RedisRestoreSession(name, target, config.spare_db, ctx, artifact);
    },
  };
  void env;
}

export const redisEngine: EngineDescriptor<RedisConfig> = {
  type: 'redis',
  kind: 'service',
  configSchema: redisConfigSchema,
  create: createRedisEngine,
};
