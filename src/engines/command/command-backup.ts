// Backup of a command service: pin() starts the dump command, stream() stores its stdout.
// "Starting the dump" is the only consistent point Bunker can give an arbitrary tool: the data is as
// of that moment only if the tool itself takes a point-in-time snapshot (mongodump --oplog, a
// filesystem snapshot, ...). A long pipe buffer is all that separates pin() from stream(): the tool
// simply blocks on a full pipe until stream() reads.
import { pipeline } from 'node:stream/promises';
import { BunkerError } from '../../core/errors.js';
import type { ServiceArtifact } from '../../repo/types.js';
import type { BackupContext, BackupSession } from '../engine.js';
import type { CommandSettings } from './index.js';
import { RunningCommand } from './run-command.js';

/** Version of the artifact layout below; restore refuses formats it does not know. */
export const COMMAND_FORMAT = 1;

export const COMMAND_WARNINGS = [
  'command service: the backup is point-in-time only if the backup command itself is; it is not synchronised with other services',
  'command service: restore pipes the data straight into the restore command; it cannot be staged, so a failed restore may leave the service partly restored',
];

export class CommandBackupSession implements BackupSession {
  private running: RunningCommand | undefined;

  constructor(
    private readonly settings: CommandSettings,
    private readonly ctx: BackupContext,
  ) {}

  async prepare(): Promise<void> {
    await this.settings.requireCwd();
  }

  async pin(): Promise<void> {
    this.running = await RunningCommand.start(this.settings.spec('backup', this.ctx.signal, 'ignore'));
  }

  async stream(): Promise<ServiceArtifact> {
    const running = this.running;
    if (!running) throw new BunkerError('internal', 'command backup: stream() called before pin()');
    const writer = this.ctx.repo.writeStream({ label: `command:${this.settings.service}` });
    let bytes = 0;
    running.child.stdout!.on('data', (d: Buffer) => {
      bytes += d.length;
      this.ctx.progress({ bytes });
    });
    const stored = pipeline(running.child.stdout!, writer).then(
      () => undefined,
      (err: unknown) => err,
    );
    const storeError = await stored;
    if (storeError) running.stop('closed');
    const exit = await running.exited;
    if (storeError) {
      throw new BunkerError('storage', `storing the output of the backup command of service "${this.settings.service}" failed: ${(storeError as Error).message}`, { cause: storeError });
    }
    const failure = running.failure(exit);
    if (failure) throw failure;
    const ref = await writer.done();
    const warnings = [...COMMAND_WARNINGS];
    if (ref.size === 0) warnings.push('command service: the backup command wrote nothing to stdout');
    return {
      engine: 'command',
      format: COMMAND_FORMAT,
      streams: { data: ref },
      trees: {},
      meta: { shell: this.settings.shell },
      size: ref.size,
      warnings,
    };
  }

  async close(): Promise<void> {
    if (this.running) {
      this.running.stop('closed');
      this.running.child.stdout?.destroy();
      this.running = undefined;
    }
  }
}
