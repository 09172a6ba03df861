// Runs the PostgreSQL client tools (pg_dump, pg_restore, psql) as child processes, streaming their
// stdin/stdout so no temporary file the size of the database is ever written.
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, realpathSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { BunkerError } from '../../core/errors.js';
import { redact } from '../../core/redact.js';

export interface ToolRun {
  tool: string;
  args: string[];
  env: NodeJS.ProcessEnv;
  /** Fed to the tool's stdin (e.g. a stored COPY stream); stdin is closed at once when absent. */
  input?: Readable;
  /** Receives the tool's stdout; stdout is discarded when absent. */
  output?: Writable;
  signal?: AbortSignal;
  /** What the run is doing, for the error message ("copying table public.film"). */
  what: string;
}

const STDERR_KEEP = 8192;

/** Where Debian and Ubuntu install each PostgreSQL version's client programs. */
const DEBIAN_BINROOT = '/usr/lib/postgresql';
const resolved = new Map<string, string>();

/**
 * The program to run for `tool`. On Debian and Ubuntu, `pg_restore` and `pg_dump` on the PATH are
 * pg_wrapper, a Perl script (20-90 ms and ~0.1 s CPU per run) that, when PGHOST is set, as it always
 * is for the engine, runs the newest installed version's program: that program is run directly. When the
 * PATH's program is anything else (a real binary, another wrapper), it is used as before.
 */
export function toolPath(tool: string, env: NodeJS.ProcessEnv, binroot = DEBIAN_BINROOT): string {
  // PGCLUSTER (version/cluster) makes pg_wrapper pick that cluster's version instead: leave it to choose.
  if (env.PGHOST === undefined || env.PGCLUSTER !== undefined || tool.includes('/')) return tool;
  const key = `${tool}\0${env.PATH ?? ''}\0${binroot}`;
  let path = resolved.get(key);
  if (path === undefined) {
    path = wrappedProgram(tool, env.PATH ?? '', binroot) ?? tool;
    resolved.set(key, path);
  }
  return path;
}

function wrappedProgram(tool: string, searchPath: string, binroot: string): string | undefined {
  for (const dir of searchPath.split(':')) {
    if (!dir) continue;
    let real: string;
    try {
      real = realpathSync(join(dir, tool));
    } catch {
      continue; // not in this directory
    }
    // The first hit is what spawn() would run: only pg_wrapper is replaced.
    if (basename(real) !== 'pg_wrapper') return undefined;
    let versions: string[];
    try {
      versions = readdirSync(binroot).filter((v) => /^\d+(\.\d+)?$/.test(v));
    } catch {
      return undefined;
    }
    // pg_wrapper's choice: the newest version that has the program.
    versions.sort((a, b) => Number(b) - Number(a));
    for (const v of versions) {
      const program = join(binroot, v, 'bin', tool);
      if (existsSync(program)) return program;
    }
    return undefined;
  }
  return undefined;
}

/** Runs a tool to completion; rejects with a BunkerError carrying the tool's (redacted) stderr. */
export async function runTool(run: ToolRun): Promise<void> {
  if (run.signal?.aborted) throw new BunkerError('aborted', `${run.what}: cancelled`);
  const child = spawn(toolPath(run.tool, run.env), run.args, {
    env: run.env,
    stdio: [run.input ? 'pipe' : 'ignore', run.output ? 'pipe' : 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (s: string) => {
    if (stderr.length < STDERR_KEEP) stderr += s;
  });
  const onAbort = () => child.kill('SIGTERM');
  run.signal?.addEventListener('abort', onAbort, { once: true });

  const exited = new Promise<{ code: number | null; sig: NodeJS.Signals | null }>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code, sig) => resolve({ code, sig }));
  });
  // Pipe failures (the tool died mid-stream) are reported through the exit status below, which
  // carries the tool's own explanation; a failing *source* stream is reported as itself.
  let streamError: unknown;
  const pumps: Promise<void>[] = [];
  if (run.input && child.stdin) {
    // A tool may stop reading early (pg_restore -l reads only the table of contents), so errors on its
    // stdin are not failures by themselves: its exit status says whether it got what it needed.
    // A failing source (a corrupt stored stream) is one, and stops the tool.
    const input = run.input;
    input.once('error', (err) => {
      streamError ??= err;
      child.kill('SIGTERM');
    });
    const stopReading = () => {
      input.unpipe(child.stdin!);
      input.destroy();
    };
    child.stdin.on('error', stopReading);
    child.once('close', () => {
      if (!input.readableEnded) stopReading();
    });
    input.pipe(child.stdin);
  }
  if (run.output && child.stdout) {
    pumps.push(
      pipeline(child.stdout, run.output).catch((err: unknown) => {
        streamError ??= err;
        child.kill('SIGTERM');
      }),
    );
  }
  let status: { code: number | null; sig: NodeJS.Signals | null };
  try {
    status = await exited;
    await Promise.all(pumps);
  } catch (err) {
    const missing = (err as NodeJS.ErrnoException)?.code === 'ENOENT';
    throw new BunkerError('engine', `${run.what}: cannot run ${run.tool}${missing ? ' (not installed)' : ''}`, {
      cause: err,
      hint: missing ? 'Install the PostgreSQL client tools (Debian: apt-get install postgresql-client).' : undefined,
    });
  } finally {
    run.signal?.removeEventListener('abort', onAbort);
  }
  if (run.signal?.aborted) throw new BunkerError('aborted', `${run.what}: cancelled`);
  if (status.code !== 0) {
    const how = status.sig ? `was killed by ${status.sig}` : `exited with status ${status.code}`;
    const text = redact(stderr.trim()) || (streamError instanceof Error ? redact(streamError.message) : 'no message');
    throw new BunkerError('engine', `${run.what}: ${run.tool} ${how}: ${text}`, { cause: streamError });
  }
  if (streamError) {
    throw new BunkerError('engine', `${run.what}: ${redact(String((streamError as Error).message ?? streamError))}`, {
      cause: streamError,
    });
  }
}

/**
 * Runs jobs with at most `limit` in flight; the first failure stops new starts and is rethrown. Each job
 * also gets the number of the worker running it (0 to limit-1), e.g. to use that worker's connection.
 */
export async function parallel<T>(items: readonly T[], limit: number, job: (item: T, worker: number) => Promise<void>): Promise<void> {
  let next = 0;
  let failure: { err: unknown } | undefined;
  const worker = async (_: unknown, n: number) => {
    while (!failure && next < items.length) {
      const item = items[next++] as T;
      try {
        await job(item, n);
      } catch (err) {
        failure ??= { err };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  if (failure) throw failure.err;
}

/** psql flags for scripted use: no ~/.psqlrc, quiet, stop at the first error. */
export const PSQL_FLAGS = ['-X', '-q', '-v', 'ON_ERROR_STOP=1'];
