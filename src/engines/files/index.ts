// files: the engine for mounts (directories of application files). Backs a directory up as one tree
// object per directory with per-file chunk lists, incrementally against the previous backup, and
// restores it atomically (staged beside the mount, swapped in with one RENAME_EXCHANGE) or in place.
import { promises as fsp } from 'node:fs';
import { release } from 'node:os';
import { isAbsolute, resolve } from 'node:path';
import type { z } from 'zod';
import { BunkerError } from '../../core/errors.js';
import type { EngineDescriptor } from '../engine.js';
import { FILES_FORMAT, FilesBackupSession } from './backup.js';
import { nativeFs } from './native.js';
import { FilesRestoreSession } from './restore.js';

export { removeStaleStaging } from './restore.js';

const configSchema = (zod: typeof z) =>
  zod.object({
    /** The directory, relative to the folder holding bunker.yaml (absolute paths are accepted too). */
    path: zod.string().min(1),
    /** gitignore-like patterns relative to the mount: "*.tmp", "cache/**", "/top-level-only". */
    exclude: zod.array(zod.string().min(1)).optional(),
  });

export type FilesConfig = z.infer<ReturnType<typeof configSchema>>;

export const filesEngine: EngineDescriptor<FilesConfig> = {
  type: 'files',
  kind: 'mount',
  configSchema,
  create(_name, config, env) {
    const root = isAbsolute(config.path) ? resolve(config.path) : resolve(env.configDir, config.path);
    if (root === '/') {
      throw new BunkerError('config_invalid', 'a mount cannot be the file-system root "/"', {
        hint: 'Point the mount at the directory the application writes its files to.',
      });
    }
    const excludes = config.exclude ?? [];
    return {
      type: 'files',
      async probe() {
        nativeFs();
        const st = await fsp.stat(root).catch((err: unknown) => {
          throw new BunkerError('unreachable', `mount directory ${JSON.stringify(root)} is not accessible: ${(err as Error).message}`, {
            cause: err,
            hint: 'Check the mount path in bunker.yaml (it is relative to the folder holding bunker.yaml).',
          });
        });
        if (!st.isDirectory()) {
          throw new BunkerError('unreachable', `mount path ${JSON.stringify(root)} is not a directory`, { hint: 'Point the mount at a directory.' });
        }
        return { version: `files format ${FILES_FORMAT} (Linux ${release()})`, details: { path: root } };
      },
      async openBackup(ctx) {
        nativeFs();
        return new FilesBackupSession(root, excludes, ctx);
      },
      async openRestore(ctx, artifact) {
        return new FilesRestoreSession(root, artifact, ctx);
      },
    };
  },
};
