// command: covers any service Bunker has no engine for, through a dump command that writes to stdout
// and a restore command that reads stdin (mongodump --archive / mongorestore --archive, tar, ...).
// Design and its limits (no cross-service consistency, no atomic restore): docs/design/engine-sqlite-and-command.md.
import { stat } from 'node:fs/promises';
import type { z } from 'zod';
import { BunkerError } from '../../core/errors.js';
import type { ServiceArtifact } from '../../repo/types.js';
import type { BackupContext, Engine, EngineDescriptor, EngineEnv, ProbeResult, RestoreContext } from '../engine.js';
import { CommandBackupSession } from './command-backup.js';
import { CommandRestoreSession } from './command-restore.js';
import { RunningCommand, type CommandSpec } from './run-command.js';

const DURATION = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h)$/;
const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 } as const;

export const commandConfigSchema = (zod: typeof z) =>
  zod.strictObject({
    /** Writes the service's data to stdout. Runs with `shell -c`, in the folder of bunker.yaml. */
    backup: zod.string().trim().min(1, 'backup must be a command that writes the data to stdout'),
    /** Reads what `backup` wrote from stdin and loads it into the service. */
    restore: zod.string().trim().min(1, 'restore must be a command that reads the data from stdin'),
    /** The shell that runs both commands (default /bin/sh). */
    shell: zod.string().min(1).optional(),
    /** Limit for each command run: seconds, or a duration such as "90s", "30m", "2h". No limit when absent. */
    timeout: zod
      .union([zod.number().positive(), zod.string().regex(DURATION, 'timeout must be seconds or a duration like "90s", "30m", "2h"')])
      .optional(),
  });
export type CommandConfig = z.infer<ReturnType<typeof commandConfigSchema>>;

export function timeoutMs(value: CommandConfig['timeout']): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value === 'number') return value * 1000;
  const [, amount, unit] = DURATION.exec(value)!;
  return Number(amount) * UNIT_MS[unit as keyof typeof UNIT_MS];
}

/** What both sessions need from the service's configuration. */
export class CommandSettings {
  readonly shell: string;
  private readonly timeout: number | undefined;

  constructor(
    readonly service: string,
    private readonly config: CommandConfig,
    private readonly env: EngineEnv,
  ) {
    this.shell = config.shell ?? '/bin/sh';
    this.timeout = timeoutMs(config.timeout);
  }

  spec(phase: 'backup' | 'restore', signal: AbortSignal, stdin: 'pipe' | 'ignore'): CommandSpec {
    return {
      what: `the ${phase} command of service "${this.service}"`,
      command: this.config[phase],
      shell: this.shell,
      cwd: this.env.configDir,
      env: { ...process.env, BUNKER_SERVICE: this.service, BUNKER_PHASE: phase },
      stdin,
      timeoutMs: this.timeout,
      signal,
    };
  }

  /** Commands run in the folder of bunker.yaml; say so clearly when it is gone. */
  async requireCwd(): Promise<void> {
    const info = await stat(this.env.configDir).catch(() => undefined);
    if (!info?.isDirectory()) {
      throw new BunkerError('engine', `command service "${this.service}": folder ${this.env.configDir} does not exist`, {
        hint: 'Commands run in the folder of bunker.yaml; check that it still exists.',
      });
    }
  }
}

class CommandEngine implements Engine {
  readonly type = 'command';
  private readonly settings: CommandSettings;

  constructor(name: string, config: CommandConfig, env: EngineEnv) {
    this.settings = new CommandSettings(name, config, env);
  }

  /** Checks that the shell starts in the service's folder; the commands themselves are not run. */
  async probe(): Promise<ProbeResult> {
    await this.settings.requireCwd();
    const check = await RunningCommand.start({
      ...this.settings.spec('backup', new AbortController().signal, 'ignore'),
      what: `the shell of service "${this.settings.service}"`,
      command: 'exit 0',
      timeoutMs: 10_000,
    });
    check.child.stdout!.resume();
    const failure = check.failure(await check.exited);
    if (failure) throw failure;
    return { version: `command (${this.settings.shell})`, details: { shell: this.settings.shell } };
  }

  async openBackup(ctx: BackupContext): Promise<CommandBackupSession> {
    return new CommandBackupSession(this.settings, ctx);
  }

  async openRestore(ctx: RestoreContext, artifact: ServiceArtifact): Promise<CommandRestoreSession> {
    return new CommandRestoreSession(this.settings, ctx, artifact);
  }
}

export const commandEngine: EngineDescriptor<CommandConfig> = {
  type: 'command',
  kind: 'service',
  configSchema: commandConfigSchema,
  create: (name, config, env) => new CommandEngine(name, config, env),
};
