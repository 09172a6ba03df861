// Runs one shell command for the command engine: its own process group (so a pipeline like
// `pg_dump | gzip` dies as a whole), a time limit, cancellation, and the tail of stderr kept for errors.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { BunkerError } from '../../core/errors.js';
import { redact } from '../../core/redact.js';

/** Bytes of stderr kept for error messages. */
const TAIL_BYTES = 4096;
/** After SIGTERM, how long a command may take to exit before SIGKILL. */
const KILL_GRACE_MS = 5000;

export interface CommandSpec {
  /** Shown in messages: "the backup command of service db". */
  what: string;
  command: string;
  shell: string;
  cwd: string;
  env: NodeJS.ProcessEnv;
  stdin: 'pipe' | 'ignore';
  timeoutMs: number | undefined;
  signal: AbortSignal;
}

export interface CommandExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** Keeps the last TAIL_BYTES of a stream. */
class Tail {
  private buf = Buffer.alloc(0);
  push(chunk: Buffer): void {
    this.buf = Buffer.concat([this.buf, chunk]);
    if (this.buf.length > TAIL_BYTES) this.buf = this.buf.subarray(this.buf.length - TAIL_BYTES);
  }
  text(): string {
    return this.buf.toString('utf8').trim();
  }
}

export class RunningCommand {
  readonly exited: Promise<CommandExit>;
  private readonly stderr = new Tail();
  private stopReason: 'timeout' | 'aborted' | 'closed' | undefined;
  private timer: NodeJS.Timeout | undefined;
  private done = false;

  private constructor(
    readonly child: ChildProcess,
    private readonly spec: CommandSpec,
  ) {
    child.stderr!.on('data', (d: Buffer) => this.stderr.push(d));
    this.exited = once(child, 'close').then(([code, signal]) => {
      this.done = true;
      clearTimeout(this.timer);
      spec.signal.removeEventListener('abort', this.onAbort);
      return { code: code as number | null, signal: signal as NodeJS.Signals | null };
    });
    if (spec.timeoutMs !== undefined) this.timer = setTimeout(() => this.stop('timeout'), spec.timeoutMs);
    spec.signal.addEventListener('abort', this.onAbort);
  }

  /** Starts the command; rejects with a clear error when the shell or the folder is missing. */
  static async start(spec: CommandSpec): Promise<RunningCommand> {
    if (spec.signal.aborted) throw new BunkerError('aborted', `${spec.what} was cancelled before it started`);
    const child = spawn(spec.shell, ['-c', spec.command], {
      cwd: spec.cwd,
      env: spec.env,
      stdio: [spec.stdin, 'pipe', 'pipe'],
      detached: true, // a process group of its own, killed as a whole
    });
    try {
      await once(child, 'spawn');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new BunkerError('engine', `${spec.what} could not start: ${code === 'ENOENT' ? `shell ${spec.shell} or folder ${spec.cwd} not found` : (err as Error).message}`, {
        hint: 'Check `shell` in bunker.yaml and that the folder of bunker.yaml exists.',
        cause: err,
      });
    }
    return new RunningCommand(child, spec);
  }

  /** Ends the whole process group: SIGTERM, then SIGKILL if it lingers. Safe to call more than once. */
  stop(reason: 'timeout' | 'aborted' | 'closed'): void {
    if (this.done) return;
    this.stopReason ??= reason;
    this.signalGroup('SIGTERM');
    setTimeout(() => this.signalGroup('SIGKILL'), KILL_GRACE_MS).unref();
  }

  /** The failure to report for this exit, or undefined when the command succeeded. */
  failure(exit: CommandExit, note = ''): BunkerError | undefined {
    const { what } = this.spec;
    if (this.stopReason === 'timeout') {
      return new BunkerError('timeout', `${what} ran longer than its limit (${(this.spec.timeoutMs ?? 0) / 1000} s) and was stopped${note}`, {
        hint: 'Raise `timeout` in bunker.yaml, or find out why the command hangs.',
      });
    }
    if (this.stopReason === 'aborted') return new BunkerError('aborted', `${what} was cancelled${note}`);
    if (exit.code === 0) return undefined;
    const how = exit.code !== null ? `exited with status ${exit.code}` : `was killed by ${exit.signal}`;
    const tail = redact(this.stderr.text());
    // stderr may echo a connection URL or a password option: redacted before it enters the message.
    return new BunkerError('engine', `${what} ${how}${note}${tail ? `; its stderr ends with:\n${tail}` : ' (no stderr output)'}`, {
      hint: `Run the command by hand in ${this.spec.cwd} to see the whole error.`,
      details: { exitCode: exit.code, signal: exit.signal },
    });
  }

  private readonly onAbort = () => this.stop('aborted');

  private signalGroup(signal: NodeJS.Signals): void {
    if (this.done || this.child.pid === undefined) return;
    try {
      process.kill(-this.child.pid, signal);
    } catch {
      // the group is already gone
    }
  }
}
