// engines/mariadb: MariaDB/MySQL databases. Consistent parallel backup (one stream per table, in
// LOAD DATA form) and all-or-nothing restore through a shadow database and one RENAME TABLE.
// docs/design/engine-mariadb.md explains the choices.
import { availableParallelism } from 'node:os';
import type { z } from 'zod';
import type { Connection, RowDataPacket } from 'mysql2/promise';
import type { Engine, EngineDescriptor, ProbeResult } from '../engine.js';
import type { Logger } from '../../core/log.js';
import { connect, engineError, parseUrl, type Target } from './connection.js';

// The backup and restore modules load when a backup or restore starts, and mysql2 at the first
// connection (connection.ts), so commands that only read the config pay for neither.
export { parseUrl } from './connection.js';

/** Finishes or undoes an interrupted restore into `target` (restore.ts). */
export async function recoverTarget(target: Target, log: Logger): Promise<void> {
  return (await import('./restore.js')).recoverTarget(target, log);
}

export const mariadbConfigSchema = (zod: typeof z) =>
  zod
    .object({
      /** mysql://user:password@host:3306/database (mariadb:// also accepted; ?socket=/path for a Unix socket). */
      url: zod.string().min(1, 'url is required'),
      /** Parallel connections for dumping and loading tables. */
      jobs: zod.number().int().min(1).max(64).optional(),
    })
    .strict()
    .superRefine((c, ctx) => {
      try {
        parseUrl(c.url);
      } catch (err) {
        ctx.addIssue({ code: 'custom', path: ['url'], message: (err as Error).message });
      }
    });

export type MariadbConfig = z.infer<ReturnType<typeof mariadbConfigSchema>>;

/**
 * Four connections by default, whatever this machine's CPU count: the work is mostly the server's
 * (it may be another host); on the 2-core benchmark machine 4 dumped faster than 2 (engine alone
 * 1.05 s vs 1.37 s). A restore further caps its loads at the server's cores (restore.ts).
 */
function defaultJobs(): number {
  return Math.max(4, Math.min(8, availableParallelism()));
}

export const mariadbEngine: EngineDescriptor<MariadbConfig> = {
  type: 'mariadb',
  aliases: ['mysql'],
  kind: 'service',
  configSchema: mariadbConfigSchema,
  create(_name, config, env): Engine {
    const target = parseUrl(config.url);
    const jobs = config.jobs ?? defaultJobs();
    return {
      type: 'mariadb',
      async probe(): Promise<ProbeResult> {
        const conn: Connection = await connect(target);
        try {
          const [[v]] = await conn.query<RowDataPacket[]>('SELECT VERSION() AS v');
          const [[s]] = await conn.query<RowDataPacket[]>(
            'SELECT COALESCE(SUM(DATA_LENGTH + INDEX_LENGTH), 0) AS size FROM information_schema.TABLES WHERE TABLE_SCHEMA = ?',
            [target.database],
          );
          const version = String(v?.v ?? '');
          const name = /mariadb/i.test(version) ? 'MariaDB' : 'MySQL';
          return { version: `${name} ${version.split('-')[0]}`, sizeEstimate: Number(s?.size ?? 0), details: { server: version } };
        } catch (err) {
          throw engineError(err, 'probing the server');
        } finally {
          await conn.end().catch(() => conn.destroy());
        }
      },
      async openBackup(ctx) {
        const { MariadbBackup } = await import('./backup.js');
        return new MariadbBackup(target, jobs, ctx);
      },
      async openRestore(ctx, artifact) {
        const { MariadbRestore } = await import('./restore.js');
        return new MariadbRestore(target, jobs, ctx, artifact);
      },
      // A restore killed after its point of no return has new tables but not yet their triggers,
      // routines, views and events: roll it forward (or drop the shadow of one killed earlier).
      recover() {
        return recoverTarget(target, env.log);
      },
    };
  },
};

/** Finishes or undoes interrupted restores into the database a config's url names. */
export function recoverInterruptedRestores(config: MariadbConfig, log: Logger): Promise<void> {
  return recoverTarget(parseUrl(config.url), log);
}
