// Restore of a command service: the stored bytes go to the restore command's stdin.
// An arbitrary tool cannot build its result beside the live service and swap it in, so stage() only
// proves the backup reads back whole (every chunk authenticated) and the folder exists; commit() runs
// the command. A failure or kill during commit() may leave the service partly restored.
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { BunkerError } from '../../core/errors.js';
import type { ServiceArtifact, StreamRef } from '../../repo/types.js';
import type { RestoreContext, RestoreSession } from '../engine.js';
import { COMMAND_FORMAT } from './command-backup.js';
import type { CommandSettings } from './index.js';
import { RunningCommand } from './run-command.js';

export class CommandRestoreSession implements RestoreSession {
  private running: RunningCommand | undefined;

  constructor(
    private readonly settings: CommandSettings,
    private readonly ctx: RestoreContext,
    private readonly artifact: ServiceArtifact,
  ) {}

  async stage(): Promise<void> {
    const ref = this.streamRef();
    await this.settings.requireCwd();
    let bytes = 0;
    await pipeline(
      this.ctx.repo.readStream(ref),
      new Writable({
        write: (chunk: Buffer, _enc, cb) => {
          bytes += chunk.length;
          cb();
        },
      }),
      { signal: this.ctx.signal },
    ).catch((err: unknown) => {
      throw this.ctx.signal.aborted ? new BunkerError('aborted', `restore of command service "${this.settings.service}" was cancelled`) : err;
    });
    if (bytes !== ref.size) {
      throw new BunkerError('corrupt', `the backup of command service "${this.settings.service}" has ${bytes} bytes, expected ${ref.size}`);
    }
    this.ctx.log.warn(`command service "${this.settings.service}": the restore command writes into the service directly; it is not atomic`);
  }

  async commit(): Promise<void> {
    const ref = this.streamRef();
    const running = await RunningCommand.start(this.settings.spec('restore', this.ctx.signal, 'pipe'));
    this.running = running;
    running.child.stdout!.resume(); // the tool's chatter is not kept; stderr is, for errors
    let fed = 0;
    const data = this.ctx.repo.readStream(ref);
    data.on('data', (d: Buffer) => {
      fed += d.length;
      this.ctx.progress({ bytes: fed, totalBytes: ref.size });
    });
    const fedError = await pipeline(data, running.child.stdin!).then(
      () => undefined,
      (err: unknown) => err as NodeJS.ErrnoException,
    );
    if (fedError && fedError.code !== 'EPIPE') running.stop('closed');
    const exit = await running.exited;
    this.running = undefined;
    const note = `; the service may be partly restored (a command restore is not atomic)`;
    const failure = running.failure(exit, note);
    if (failure) throw failure;
    if (fedError?.code === 'EPIPE') {
      // The tool said it succeeded without reading everything; its exit status is the authority.
      this.ctx.log.warn(`command service "${this.settings.service}": the restore command exited with status 0 before reading all ${ref.size} bytes`);
    } else if (fedError) {
      throw new BunkerError('engine', `feeding the restore command of service "${this.settings.service}" failed: ${fedError.message}${note}`, { cause: fedError });
    }
  }

  async abort(): Promise<void> {
    if (this.running) {
      this.running.stop('aborted');
      await this.running.exited;
      this.running = undefined;
    }
  }

  private streamRef(): StreamRef {
    const { artifact } = this;
    if (artifact.engine !== 'command') {
      throw new BunkerError('target_mismatch', `service "${this.settings.service}" is a command service but the backup holds a ${artifact.engine} service`);
    }
    if (artifact.format !== COMMAND_FORMAT) {
      throw new BunkerError('not_restorable', `command backup format ${artifact.format} is not known to this Bunker`, {
        hint: 'Restore it with the Bunker version that made the backup, or a newer one.',
      });
    }
    const ref = artifact.streams.data;
    if (!ref) throw new BunkerError('not_restorable', `the backup of command service "${this.settings.service}" has no data stream`);
    return ref;
  }
}
