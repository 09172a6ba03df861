// The control channel between a running gateway and the backups/restores that hold its traffic: one
// Unix socket per environment in the state dir, newline-delimited JSON. A hold belongs to the control
// connection that asked for it, so when the holder dies (even by SIGKILL) the kernel closes the
// connection and the gateway releases at once; the hold timeout covers a holder that hangs instead.
import { createHash } from 'node:crypto';
import { chmodSync, mkdirSync, unlinkSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { BunkerError, type ErrorCode } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import type { HoldingProxy, ProxyStats } from './proxy.js';
import type { HoldReport } from './types.js';

// Unix socket paths are limited to ~104 bytes (macOS) / 108 (Linux).
const MAX_SOCKET_PATH = 100;

/** Where the environment's gateway listens for control requests (deterministic, so both sides agree). */
export function controlSocketPath(stateDir: string, environment: string): string {
  const safe = environment.replace(/[^A-Za-z0-9._-]/g, (c) => `%${c.charCodeAt(0).toString(16)}`);
  const path = join(stateDir, 'gateway', `${safe}.sock`);
  if (path.length <= MAX_SOCKET_PATH) return path;
  const digest = createHash('sha256').update(path).digest('hex').slice(0, 20);
  return join(tmpdir(), `bunker-gw-${digest}.sock`);
}

type Message =
  | { op: 'hold'; timeoutMs: number; drainTimeoutMs: number }
  | { op: 'release' }
  | { op: 'status' }
  | { event: 'held'; drainMs: number }
  | { event: 'released'; report: HoldReport }
  | { event: 'expired'; report: HoldReport }
  | { event: 'status'; stats: ProxyStats }
  | { event: 'error'; code: ErrorCode; message: string; hint?: string };

/** Newline-delimited JSON over a socket, with a promise for the next message. */
class Channel {
  private buffered = '';
  private readonly inbox: Message[] = [];
  private waiter: ((m: Message | null) => void) | null = null;
  closed = false;

  constructor(
    readonly socket: net.Socket,
    private readonly onUnsolicited?: (m: Message) => void,
  ) {
    socket.setEncoding('utf8');
    socket.on('data', (text: string) => {
      this.buffered += text;
      let nl: number;
      while ((nl = this.buffered.indexOf('\n')) >= 0) {
        const line = this.buffered.slice(0, nl);
        this.buffered = this.buffered.slice(nl + 1);
        if (!line.trim()) continue;
        let message: Message;
        try {
          message = JSON.parse(line) as Message;
        } catch {
          socket.destroy();
          return;
        }
        this.deliver(message);
      }
    });
    socket.on('error', () => socket.destroy());
    socket.on('close', () => {
      this.closed = true;
      this.waiter?.(null);
    });
  }

  private deliver(message: Message): void {
    if (this.waiter) this.waiter(message);
    else if (this.onUnsolicited && 'event' in message && message.event === 'expired') this.onUnsolicited(message);
    else this.inbox.push(message);
  }

  send(message: Message): void {
    if (!this.socket.destroyed) this.socket.write(`${JSON.stringify(message)}\n`);
  }

  /** The next message, or null when the connection closed or timeoutMs passed. */
  next(timeoutMs: number): Promise<Message | null> {
    const queued = this.inbox.shift();
    if (queued) return Promise.resolve(queued);
    if (this.closed) return Promise.resolve(null);
    return new Promise((resolve) => {
      const timer = setTimeout(() => settle(null), timeoutMs);
      const settle = (m: Message | null) => {
        clearTimeout(timer);
        this.waiter = null;
        resolve(m);
      };
      this.waiter = settle;
    });
  }
}

function errorMessage(err: unknown): Message {
  const e = err instanceof BunkerError ? err : new BunkerError('internal', err instanceof Error ? err.message : String(err));
  return { event: 'error', code: e.code, message: e.message, ...(e.hint ? { hint: e.hint } : {}) };
}

function connect(path: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.createConnection(path);
    socket.once('connect', () => {
      socket.off('error', reject);
      resolve(socket);
    });
    socket.once('error', reject);
  });
}

export interface ControlServer {
  path: string;
  close(): Promise<void>;
}

/** Serves the control socket for one proxy. Refuses to start when another gateway already answers there. */
export async function serveControl(proxy: HoldingProxy, path: string, log: Logger): Promise<ControlServer> {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  try {
    const other = await connect(path);
    other.destroy();
    throw new BunkerError('locked', `a gateway for environment "${proxy.environment}" is already running`, {
      hint: 'Stop the other `bunker gateway` process first; one gateway serves each environment.',
      details: { socket: path },
    });
  } catch (err) {
    if (err instanceof BunkerError) throw err;
    // Nothing answers: a stale socket from a gateway that died, or no socket at all.
    try {
      unlinkSync(path);
    } catch {
      /* not there */
    }
  }

  const sessions = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sessions.add(socket);
    // True while this connection's hold is pending or established: its close then releases traffic.
    let owner = false;
    const channel = new Channel(socket);
    const serve = async () => {
      for (;;) {
        const message = await channel.next(2 ** 31 - 1);
        if (!message) return;
        if (!('op' in message)) continue;
        if (message.op === 'status') {
          channel.send({ event: 'status', stats: proxy.stats() });
        } else if (message.op === 'hold') {
          if (proxy.holding) {
            channel.send(errorMessage(new BunkerError('locked', `traffic of environment "${proxy.environment}" is already held by another backup or restore`, {
              hint: 'Wait for that operation to finish, then retry.',
            })));
            continue;
          }
          owner = true;
          try {
            const { drainMs } = await proxy.hold({
              timeoutMs: message.timeoutMs,
              drainTimeoutMs: message.drainTimeoutMs,
              onExpired: (report) => {
                owner = false;
                channel.send({ event: 'expired', report });
              },
            });
            channel.send({ event: 'held', drainMs });
          } catch (err) {
            owner = false;
            channel.send(errorMessage(err));
          }
        } else if (message.op === 'release') {
          const report = owner ? proxy.release() : null;
          owner = false;
          if (report) channel.send({ event: 'released', report });
          else channel.send(errorMessage(new BunkerError('usage', 'this connection holds no traffic')));
        }
      }
    };
    void serve();
    socket.on('close', () => {
      sessions.delete(socket);
      if (owner && proxy.holding) {
        owner = false;
        proxy.release();
        log.warn(`gateway ${proxy.environment}: the process holding traffic went away, so traffic was released`);
      }
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => {
      server.off('error', reject);
      resolve();
    });
  });
  chmodSync(path, 0o600);
  return {
    path,
    close: async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of sessions) s.destroy();
      await closed;
      try {
        unlinkSync(path);
      } catch {
        /* already gone */
      }
    },
  };
}

export interface HoldClientOptions {
  path: string;
  environment: string;
  timeoutMs: number;
  drainTimeoutMs: number;
  log: Logger;
}

export interface HeldTraffic {
  drainMs: number;
  release(): Promise<HoldReport>;
}

/** Asks the gateway behind `path` to hold traffic; null when no gateway answers there. */
export async function requestHold(options: HoldClientOptions): Promise<HeldTraffic | null> {
  const { environment, log } = options;
  let socket: net.Socket;
  try {
    socket = await connect(options.path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ECONNREFUSED' || code === 'ENOTSOCK') return null;
    throw new BunkerError('unreachable', `cannot reach the gateway of environment "${environment}": ${(err as Error).message}`, {
      hint: 'Check that `bunker gateway` runs with the same state directory.',
      cause: err,
    });
  }

  let expired: HoldReport | null = null;
  const channel = new Channel(socket, (m) => {
    if ('event' in m && m.event === 'expired') expired = m.report;
  });
  channel.send({ op: 'hold', timeoutMs: options.timeoutMs, drainTimeoutMs: options.drainTimeoutMs });
  // The gateway answers within the drain timeout; the margin covers a busy event loop.
  const answer = await channel.next(options.drainTimeoutMs + 5_000);
  if (!answer || !('event' in answer) || answer.event !== 'held') {
    socket.destroy();
    if (answer && 'event' in answer && answer.event === 'error') {
      throw new BunkerError(answer.code, answer.message, answer.hint ? { hint: answer.hint } : {});
    }
    throw new BunkerError('unreachable', `the gateway of environment "${environment}" did not confirm the traffic hold`, {
      hint: 'Check the `bunker gateway` process and its log.',
    });
  }

  let released: Promise<HoldReport> | null = null;
  const expiredError = () =>
    new BunkerError(
      'timeout',
      `traffic of environment "${environment}" stayed held past the hold timeout (${options.timeoutMs} ms), so the gateway released it by itself; the services may not agree with each other`,
      { hint: 'See what made the hold slow in the activity log, or raise the hold timeout.' },
    );
  const doRelease = async (): Promise<HoldReport> => {
    if (expired) {
      socket.end();
      throw expiredError();
    }
    if (channel.closed) {
      throw new BunkerError('unreachable', `the gateway of environment "${environment}" stopped during the traffic hold`, {
        hint: 'Restart `bunker gateway` and take the backup again.',
      });
    }
    channel.send({ op: 'release' });
    for (;;) {
      const m = await channel.next(10_000);
      if (m && 'event' in m && m.event === 'released') {
        socket.end();
        log.debug(`gateway ${environment}: released after ${m.report.pauseMs} ms`);
        return m.report;
      }
      if (m && 'event' in m && m.event === 'expired') {
        socket.end();
        throw expiredError();
      }
      if (!m || ('event' in m && m.event === 'error')) {
        socket.destroy();
        // The connection closing releases the hold anyway; say what happened.
        if (expired) throw expiredError();
        throw new BunkerError('unreachable', `the gateway of environment "${environment}" did not confirm the release`, {
          hint: 'Traffic is released when the control connection closes; check the `bunker gateway` log.',
        });
      }
    }
  };
  return {
    drainMs: answer.drainMs,
    release: () => (released ??= doRelease()),
  };
}

/** The gateway's counters, or null when no gateway runs for the environment. */
export async function queryStatus(path: string): Promise<ProxyStats | null> {
  let socket: net.Socket;
  try {
    socket = await connect(path);
  } catch {
    return null;
  }
  const channel = new Channel(socket);
  channel.send({ op: 'status' });
  const m = await channel.next(5_000);
  socket.destroy();
  return m && 'event' in m && m.event === 'status' ? m.stats : null;
}
