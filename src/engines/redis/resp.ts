// A small RESP2 client over net/tls: ordinary commands, deep pipelining for RESTORE, and a hand-over
// of the raw socket for the replication stream (which is not RESP once the RDB payload starts).
import net from 'node:net';
import tls from 'node:tls';
import { BunkerError } from '../../core/errors.js';
import type { RedisTarget } from './url.js';

export type Reply = string | number | Buffer | null | Reply[];

/** An error reply from the server (-ERR ...). */
export class RedisReplyError extends Error {
  override name = 'RedisReplyError';
}

class NeedMore {}
const NEED_MORE = new NeedMore();

/** Parses one reply at buf[pos]; returns [reply, nextPos] or throws NEED_MORE. */
function parseReply(buf: Buffer, pos: number): [Reply | RedisReplyError, number] {
  if (pos >= buf.length) throw NEED_MORE;
  // Fast path for the reply a pipelined RESTORE gets.
  if (buf[pos] === 0x2b && buf[pos + 1] === 0x4f && buf[pos + 2] === 0x4b && buf[pos + 3] === 0x0d && pos + 4 < buf.length) {
    return OK_REPLY(pos + 5);
  }
  const lineEnd = buf.indexOf('\r\n', pos + 1);
  if (lineEnd < 0) throw NEED_MORE;
  const kind = buf[pos];
  const line = buf.toString('latin1', pos + 1, lineEnd);
  const next = lineEnd + 2;
  switch (kind) {
    case 0x2b: // +
      return [line, next];
    case 0x2d: // -
      return [new RedisReplyError(buf.toString('utf8', pos + 1, lineEnd)), next];
    case 0x3a: // :
      return [Number(line), next];
    case 0x24: {
      // $
      const len = Number(line);
      if (len < 0) return [null, next];
      if (next + len + 2 > buf.length) throw NEED_MORE;
      return [buf.subarray(next, next + len), next + len + 2];
    }
    case 0x2a: {
      // *
      const count = Number(line);
      if (count < 0) return [null, next];
      const items: Reply[] = [];
      let p = next;
      for (let i = 0; i < count; i++) {
        const [item, after] = parseReply(buf, p);
        items.push(item instanceof RedisReplyError ? item.message : item);
        p = after;
      }
      return [items, p];
    }
    default:
      throw new BunkerError('engine', `unexpected byte 0x${(kind ?? 0).toString(16)} in a Redis reply`);
  }
}

function OK_REPLY(next: number): [Reply, number] {
  return ['OK', next];
}

/** Encodes a command in one allocation (a pipelined restore sends millions of them). */
function encodeCommand(args: readonly (string | Buffer | number)[]): Buffer {
  let size = 1 + String(args.length).length + 2;
  const bufs: Buffer[] = new Array(args.length);
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    const b = Buffer.isBuffer(a) ? a : Buffer.from(typeof a === 'number' ? String(a) : a);
    bufs[i] = b;
    size += 1 + String(b.length).length + 2 + b.length + 2;
  }
  const out = Buffer.allocUnsafe(size);
  let p = out.write(`*${args.length}\r\n`, 0, 'latin1');
  for (const b of bufs) {
    p += out.write(`$${b.length}\r\n`, p, 'latin1');
    p += b.copy(out, p);
    out[p++] = 0x0d;
    out[p++] = 0x0a;
  }
  return out;
}

/** Called with the reply, or with the error reply / connection failure. */
type ReplyCallback = (err: Error | null, reply: Reply) => void;

/**
 * Takes over a connection's incoming bytes (the replication payload, which is not RESP). On plain TCP
 * the socket reads straight into space(): no buffer per read, no copy.
 */
export interface RawSink {
  /** Where the next bytes go: free, non-empty, and not written by anyone else until filled(). */
  space(): Buffer;
  /** `n` bytes were put at the start of the buffer space() returned last. */
  filled(n: number): void;
  /** The connection closed or failed; no more bytes come. */
  ended(err: Error): void;
}

/** Socket reads land here while no RawSink takes them (replies are copied out: it is reused). */
const READ_SCRATCH_BYTES = 64 * 1024;

export class RespConnection {
  private buf: Buffer = Buffer.alloc(0);
  /** Callbacks of unanswered commands, oldest at pendingHead. */
  private pending: ReplyCallback[] = [];
  private pendingHead = 0;
  private outQueue: Buffer[] = [];
  private outBytes = 0;
  private flushScheduled = false;
  private closedError: Error | null = null;
  private sink: RawSink | null = null;
  /** The sink's buffer the socket reads into now (plain TCP with rawReads), or null. */
  private sinkSpace: Buffer | null = null;
  private drainWaiters: (() => void)[] = [];

  private constructor(
    readonly socket: net.Socket,
    private readonly display: string,
    private readonly scratch: Buffer | null,
  ) {
    if (!scratch) socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err) => this.fail(new BunkerError('unreachable', `redis ${display}: ${err.message}`)));
    socket.on('close', () => this.fail(new BunkerError('unreachable', `redis ${display}: connection closed`)));
  }

  /**
   * Connects, authenticates and selects the db (when given). rawReads: the connection will hand its
   * bytes to a RawSink (readInto), and on plain TCP the socket then reads into the sink's buffers.
   */
  static async connect(target: RedisTarget, options: { timeoutMs?: number; db?: number | null; rawReads?: boolean } = {}): Promise<RespConnection> {
    const timeoutMs = options.timeoutMs ?? 10_000;
    // onread needs the connection before it exists: the socket asks through this holder.
    const scratch = options.rawReads && !target.tls ? Buffer.allocUnsafe(READ_SCRATCH_BYTES) : null;
    let holder: RespConnection | null = null;
    const socket = await new Promise<net.Socket>((resolve, reject) => {
      const s: net.Socket = target.tls
        ? tls.connect({ host: target.host, port: target.port, servername: net.isIP(target.host) ? undefined : target.host })
        : net.connect({
            host: target.host,
            port: target.port,
            ...(scratch
              ? {
                  onread: {
                    buffer: () => (holder ? holder.nextReadBuffer() : scratch),
                    callback: (n: number, buf: Uint8Array) => {
                      holder?.onRead(n, buf as Buffer);
                      return true; // pausing is explicit (pause()/resume())
                    },
                  },
                }
              : {}),
          });
      const timer = setTimeout(() => {
        s.destroy();
        reject(new BunkerError('unreachable', `redis ${target.display}: no connection within ${timeoutMs} ms`, {
          hint: 'Check that the server runs and the host and port are right.',
        }));
      }, timeoutMs);
      s.once(target.tls ? 'secureConnect' : 'connect', () => {
        clearTimeout(timer);
        s.setNoDelay(true);
        resolve(s);
      });
      s.once('error', (err) => {
        clearTimeout(timer);
        reject(new BunkerError('unreachable', `redis ${target.display}: ${err.message}`, {
          hint: 'Check that the server runs and the host and port are right.',
          cause: err,
        }));
      });
    });
    const conn = new RespConnection(socket, target.display, scratch);
    holder = conn;
    try {
      if (target.password !== undefined) {
        const args = target.username ? ['AUTH', target.username, target.password] : ['AUTH', target.password];
        await conn.command(args).catch((err: unknown) => {
          throw new BunkerError('unreachable', `redis ${target.display}: authentication failed (${(err as Error).message})`, {
            hint: 'Check the user and password in the url.',
          });
        });
      }
      const db = options.db === undefined ? target.db : options.db;
      if (db !== null && db !== 0) await conn.command(['SELECT', db]);
    } catch (err) {
      conn.close();
      throw err;
    }
    return conn;
  }

  private fail(err: Error): void {
    if (this.closedError) return;
    this.closedError = err;
    const callbacks = this.pending.slice(this.pendingHead);
    this.pending = [];
    this.pendingHead = 0;
    for (const cb of callbacks) cb(err, null);
    for (const w of this.drainWaiters.splice(0)) w();
    this.sink?.ended(err);
  }

  /** onread: the buffer the next socket read fills (called after every read). */
  private nextReadBuffer(): Buffer {
    this.sinkSpace = this.sink && !this.closedError ? this.sink.space() : null;
    return this.sinkSpace ?? this.scratch!;
  }

  /** onread: `n` bytes arrived in `buf`. */
  private onRead(n: number, buf: Buffer): void {
    if (this.sink && buf === this.sinkSpace) return this.sink.filled(n);
    // The scratch buffer is reused by the next read: copy.
    this.onData(this.sink ? buf.subarray(0, n) : Buffer.from(buf.subarray(0, n)));
  }

  /** Copies bytes into the sink (TLS, and what arrived before it took over). */
  private copyToSink(sink: RawSink, chunk: Buffer): void {
    let from = 0;
    while (from < chunk.length) {
      const space = sink.space();
      const n = chunk.copy(space, 0, from);
      from += n;
      sink.filled(n);
    }
  }

  private onData(chunk: Buffer): void {
    if (this.sink) return this.copyToSink(this.sink, chunk);
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    let pos = 0;
    while (pos < this.buf.length && this.pendingHead < this.pending.length) {
      let parsed: [Reply | RedisReplyError, number];
      try {
        parsed = parseReply(this.buf, pos);
      } catch (err) {
        if (err === NEED_MORE) break;
        this.fail(err as Error);
        this.socket.destroy();
        return;
      }
      pos = parsed[1];
      const cb = this.pending[this.pendingHead++]!;
      if (parsed[0] instanceof RedisReplyError) cb(parsed[0], null);
      else cb(null, parsed[0]);
    }
    if (this.pendingHead > 4096 && this.pendingHead * 2 > this.pending.length) {
      this.pending = this.pending.slice(this.pendingHead);
      this.pendingHead = 0;
    }
    this.buf = pos >= this.buf.length ? Buffer.alloc(0) : this.buf.subarray(pos);
    if (this.inFlight < this.lowWater) for (const w of this.drainWaiters.splice(0)) w();
  }

  private lowWater = 0;

  /** Sends a command; resolves with its reply, rejects with RedisReplyError for an error reply. */
  command(args: readonly (string | Buffer | number)[]): Promise<Reply> {
    return new Promise<Reply>((resolve, reject) => this.send(args, (err, reply) => (err ? reject(err) : resolve(reply))));
  }

  /** Sends a command without a promise; `callback` gets the reply or the error (pipelining). */
  send(args: readonly (string | Buffer | number)[], callback: ReplyCallback): void {
    if (this.closedError) return callback(this.closedError, null);
    const out = encodeCommand(args);
    this.pending.push(callback);
    this.outQueue.push(out);
    this.outBytes += out.length;
    if (this.outBytes >= 256 * 1024) this.flush();
    else if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
  }

  private flush(): void {
    this.flushScheduled = false;
    if (this.outQueue.length === 0 || this.closedError) return;
    const data = this.outQueue.length === 1 ? this.outQueue[0]! : Buffer.concat(this.outQueue);
    this.outQueue = [];
    this.outBytes = 0;
    this.socket.write(data);
  }

  /** Commands sent and not yet answered. */
  get inFlight(): number {
    return this.pending.length - this.pendingHead;
  }

  /** Resolves once fewer than `n` commands are unanswered (pipelining back-pressure). */
  waitBelow(n: number): Promise<void> {
    if (this.inFlight < n || this.closedError) return Promise.resolve();
    this.flush();
    this.lowWater = n;
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  /**
   * From now on every byte goes to `sink` instead of the reply parser (the replication payload).
   * Bytes already buffered are handed over first.
   */
  readInto(sink: RawSink): void {
    this.sink = sink;
    const rest = this.buf;
    this.buf = Buffer.alloc(0);
    if (rest.length) this.copyToSink(sink, rest);
    if (this.closedError) sink.ended(this.closedError);
  }

  /** Stops reading from the socket (back-pressure for a RawSink) until resume(). */
  pause(): void {
    this.socket.pause();
  }

  resume(): void {
    this.socket.resume();
  }

  /** Sends a command without waiting for a reply (PSYNC, whose answer goes to a RawSink). */
  writeRaw(args: readonly (string | Buffer | number)[]): void {
    this.flush();
    this.socket.write(encodeCommand(args));
  }

  get error(): Error | null {
    return this.closedError;
  }

  close(): void {
    this.socket.destroy();
  }
}

/** Reply as text (bulk strings and simple strings). */
export function replyText(r: Reply): string {
  if (Buffer.isBuffer(r)) return r.toString('utf8');
  if (typeof r === 'string') return r;
  if (typeof r === 'number') return String(r);
  return '';
}
