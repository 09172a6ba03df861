// postgresql: the engine for `type: postgresql` services: consistent parallel backups through an
// exported snapshot, and all-or-nothing restores through a shadow database swapped in by rename.
import type { z } from 'zod';
import os from 'node:os';
import { BunkerError } from '../../core/errors.js';
import type { Engine, EngineDescriptor } from '../engine.js';
import { clientConfig, parsePgUrl, pgClient } from './connection.js';

// The session modules load when a backup or restore starts, and the pg driver at the first connection
// (connection.ts), so commands that only read the config pay for neither.

const configSchema = (zod: typeof z) =>
  zod
    .object({
      /** The database to back up; with `databases: all`, the one Bunker connects to for the list of databases and roles. */
      url: zod.string().min(1),
      /** Every database of the server (templates aside) plus the cluster's roles. */
      databases: zod.literal('all').optional(),
      /** Restore objects owned by the connecting user (and without grants to roles the target lacks). */
      no_owner: zod.boolean().optional(),
      /** Parallel sessions for COPY and index builds (default: twice the CPU count, at least 2, at most 8). */
      jobs: zod.number().int().min(1).max(64).optional(),
    })
    .strict();

export type PostgresqlConfig = z.infer<ReturnType<typeof configSchema>>;

export const postgresqlEngine: EngineDescriptor<PostgresqlConfig> = {
  type: 'postgresql',
  aliases: ['postgres', 'pgsql'],
  kind: 'service',
  configSchema,
  create(name, config, env): Engine {
    const target = parsePgUrl(config.url);
    // Twice the cores: a COPY session spends part of its time waiting on the repository or the server.
    const all = config.databases === 'all';
    const jobs = config.jobs ?? Math.min(8, Math.max(2, 2 * os.availableParallelism()));
    return {
      type: 'postgresql',
      async probe() {
        const client = new (await pgClient())(clientConfig(target));
        client.on('error', () => {});
        try {
          await client.connect();
          const { rows } = await client.query(
            all
              ? `SELECT current_setting('server_version') AS v,
                   (SELECT sum(pg_database_size(oid)) FROM pg_database WHERE NOT datistemplate AND datallowconn)::bigint AS size`
              : `SELECT current_setting('server_version') AS v, pg_database_size(current_database())::bigint AS size`,
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
        if (all) return new (await import('./cluster.js')).PgClusterBackupSession(target, ctx, jobs);
        return new (await import('./backup.js')).PgBackupSession(target, ctx, jobs);
      },
      async openRestore(ctx, artifact) {
        const { CLUSTER_FORMAT, PgClusterRestoreSession } = await import('./cluster.js');
        const { PgRestoreSession } = await import('./restore.js');
        const options = { jobs, noOwner: config.no_owner ?? false, stateDir: env.stateDir };
        const isCluster = artifact.engine === 'postgresql' && artifact.format === CLUSTER_FORMAT;
        if (isCluster !== all && artifact.engine === 'postgresql') {
          throw new BunkerError(
            'target_mismatch',
            isCluster
              ? `service ${name}: the backup holds all databases of a server; this service is one database`
              : `service ${name}: the backup holds one database; this service is databases: all`,
            { hint: 'Restore into a service with the same databases setting (set or drop databases: all in its config).' },
          );
        }
        return all ? new PgClusterRestoreSession(target, ctx, artifact, options) : new PgRestoreSession(target, ctx, artifact, options);
      },
    };
  },
};
