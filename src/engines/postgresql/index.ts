// postgresql: the engine for `type: postgresql` services: consistent parallel backups through an
// exported snapshot, and all-or-nothing restores through a shadow database swapped in by rename.
import { z } from 'zod';
import os from 'node:os';
import pg from 'pg';
import { BunkerError } from '../../core/errors.js';
import type { Engine, EngineDescriptor } from '../engine.js';
import { PgBackupSession } from './backup.js';
import { clientConfig, parsePgUrl } from './connection.js';
import { PgRestoreSession } from './restore.js';

const configSchema = z
  .object({
    url: z.string().min(1),
    /** Every database of the server plus roles: not built yet, refused with a clear message. */
    databases: z.literal('all').optional(),
    /** Restore objects owned by the connecting user (and without grants to roles the target lacks). */
    no_owner: z.boolean().optional(),
    /** Parallel sessions for COPY and index builds (default: twice the CPU count, at least 2, at most 8). */
    jobs: z.number().int().min(1).max(64).optional(),
  })
  .strict()
  .refine((c) => c.databases === undefined, {
    message: 'databases: all is not supported yet; list one service per database',
    path: ['databases'],
  });

export type PostgresqlConfig = z.infer<typeof configSchema>;

export const postgresqlEngine: EngineDescriptor<PostgresqlConfig> = {
  type: 'postgresql',
  aliases: ['postgres', 'pgsql'],
  kind: 'service',
  configSchema,
  create(name, config, env): Engine {
    const target = parsePgUrl(config.url);
    // Twice the cores: a COPY session spends part of its time waiting on the repository or the server.
    const jobs = config.jobs ?? Math.min(8, Math.max(2, 2 * os.availableParallelism()));
    return {
      type: 'postgresql',
      async probe() {
        const client = new pg.Client(clientConfig(target));
        client.on('error', () => {});
        try {
          await client.connect();
          const { rows } = await client.query(
            `SELECT current_setting('server_version') AS v, pg_database_size(current_database())::bigint AS size`,
          );
          return { version: `PostgreSQL ${rows[0].v}`, sizeEstimate: Number(rows[0].size) };
        } catch (err) {
          throw new BunkerError('unreachable', `service ${name}: cannot reach PostgreSQL at ${target.display}: ${(err as Error).message}`, {
            cause: err,
            hint: 'Check that the server is running and the url (host, port, user, database) is right.',
          });
        } finally {
          await client.end().catch(() => {});
        }
      },
      async openBackup(ctx) {
        return new PgBackupSession(target, ctx, jobs);
      },
      async openRestore(ctx, artifact) {
        return new PgRestoreSession(target, ctx, artifact, { jobs, noOwner: config.no_owner ?? false, stateDir: env.stateDir });
      },
    };
  },
};
