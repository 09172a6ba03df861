// The backup's row copies read their result set straight off the connection's socket. mysql2 hands
// every row packet through its parser, connection and command (a chain of calls and checks per row:
// ~15 % of the backup's main thread for the sysbench set); here the SELECT is sent as one COM_QUERY
// packet while mysql2's connection sits idle, and the reply is framed in place, chunk by chunk:
// column count, column definitions (skipped), EOF, rows, EOF (or an ERR packet at any point).
// mysql2 never sees the reply: its 'data' listeners are set aside until the result set has ended.
// The dump connections' sockets (rowSocket()) also read into one reused buffer instead of a new
// 64 KiB buffer per read (400 MB of short-lived memory, and its garbage collections, for the sysbench
// set): chunks go to the row reader in place, or, between result sets, to mysql2 as copies.
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { connect as netConnect, type Socket } from 'node:net';
import type { Connection as CbConnection } from 'mysql2';

/** A payload of this length continues in the next packet (rows of 16 MiB and more). */
const MAX_PAYLOAD = 0xffffff;
const COM_QUERY = 0x03;
/** Carried-over partial packets are copied into a buffer of at least this size. */
const CARRY_BYTES = 64 * 1024;

/** Size of a row socket's read buffer (a read takes what the kernel holds, up to this). */
const READ_BYTES = 128 * 1024;
const kSink = Symbol('bunker.rowSink');
type Sink = (chunk: Buffer) => void;
type RowSocket = Socket & { [kSink]?: Sink | null };

/**
 * A socket for mysql2's `stream` option that reads into one reused buffer. Chunks go to the sink a
 * readResultSet() installs (valid only during the call), or else to mysql2 as copies.
 */
export function rowSocket(options: { host: string; port: number; socketPath?: string }): Socket {
  const buffer = Buffer.allocUnsafe(READ_BYTES);
  const socket: RowSocket = netConnect({
    ...(options.socketPath ? { path: options.socketPath } : { host: options.host, port: options.port }),
    onread: {
      buffer,
      callback: (n: number) => {
        const sink = socket[kSink];
        if (sink) sink(buffer.subarray(0, n));
        else socket.emit('data', Buffer.from(buffer.subarray(0, n)));
        return true;
      },
    },
  });
  socket[kSink] = null;
  if (!options.socketPath) socket.setNoDelay(true);
  return socket;
}

/**
 * mysql2's table of server error numbers to names (ER_TABLE_DEF_CHANGED, ...), for `code`. Loaded at
 * the first server error, not with this module: loading mysql2 is start-up time for every CLI command.
 */
let errorNameTable: Record<number, string> | undefined;
function errorName(errno: number): string | undefined {
  if (!errorNameTable) {
    try {
      const require = createRequire(import.meta.url);
      errorNameTable = require(join(dirname(require.resolve('mysql2')), 'lib/constants/errors.js')) as Record<number, string>;
    } catch {
      errorNameTable = {};
    }
  }
  return errorNameTable[errno];
}

/** An error the server sent (ERR packet), shaped like mysql2's so engineError() treats it alike. */
export class ServerError extends Error {
  constructor(
    message: string,
    readonly errno: number,
    readonly sqlState: string,
    readonly code: string | undefined,
  ) {
    super(message);
  }
}

/** Parses an ERR packet's payload data[start, end). */
export function parseErrPacket(data: Buffer, start: number, end: number): ServerError {
  const errno = data.readUInt16LE(start + 1);
  let p = start + 3;
  let sqlState = '';
  if (data[p] === 0x23 /* # */) {
    sqlState = data.toString('latin1', p + 1, p + 6);
    p += 6;
  }
  return new ServerError(data.toString('utf8', p, end), errno, sqlState, errorName(errno));
}

export interface ResultSetReader {
  /** Settles when the result set has ended (or failed); the connection is then mysql2's again. */
  readonly done: Promise<void>;
  /** Stops reading from the socket (the chunk being framed is still delivered). */
  pause(): void;
  resume(): void;
  /** Stops delivering rows and rejects `done` with `err`; the caller drops the connection. */
  fail(err: unknown): void;
}

/**
 * Sends `sql` (a SELECT of `columns` columns) on an idle mysql2 connection and calls `row` with each
 * row's text-protocol payload, data[start, end): valid only during the call. The connection must
 * not use compression or TLS (the engine's connections use neither).
 */
export function readResultSet(raw: CbConnection, sql: string, columns: number, row: (data: Buffer, start: number, end: number) => void): ResultSetReader {
  const internals = raw as unknown as { stream: Socket; config: { compress?: boolean; ssl?: unknown }; _command?: unknown };
  const stream = internals.stream;
  let settle!: { resolve: () => void; reject: (err: unknown) => void };
  const done = new Promise<void>((resolve, reject) => (settle = { resolve, reject }));
  if (internals.config.compress || internals.config.ssl || internals._command || stream.destroyed) {
    settle.reject(new Error('mariadb: the row reader needs an open, idle connection without compression or TLS'));
    return { done, pause() {}, resume() {}, fail() {} };
  }

  // Reply state. A packet split over chunks is carried over (copied: a chunk is only valid while it
  // is being framed); one split at 16 MiB is gathered piece by piece.
  let phase: 'count' | 'columns' | 'columnsEnd' | 'rows' = 'count';
  let columnsLeft = 0;
  let carry: Buffer | null = null;
  let carried = 0;
  let pieces: Buffer[] | null = null;
  let finished = false;

  // Where chunks come from: the row socket's sink, or (any other socket) its 'data' event, with
  // mysql2's listeners set aside meanwhile.
  const rowStream = stream as RowSocket;
  const sinkMode = rowStream[kSink] === null;
  const mysqlListeners = sinkMode ? [] : (stream.listeners('data') as ((chunk: Buffer) => void)[]);
  const detach = (): void => {
    if (sinkMode) rowStream[kSink] = null;
    else stream.removeListener('data', onData);
    stream.removeListener('close', onClose);
  };
  const end = (err?: unknown): void => {
    if (finished) return;
    finished = true;
    detach();
    if (err === undefined) {
      raw.removeListener('error', onConnectionError);
      for (const l of mysqlListeners) stream.on('data', l);
      settle.resolve();
      return;
    }
    // A half-read result set leaves the connection unusable: the server's further rows must not
    // reach mysql2 (it would take them for a protocol error), so the socket is dropped here. The
    // 'error' mysql2 then reports on the idle connection is absorbed (onConnectionError stays).
    if (sinkMode) rowStream[kSink] = () => {};
    stream.destroy();
    settle.reject(err);
  };
  const onClose = (): void => end(Object.assign(new Error('Connection lost: the server closed the connection.'), { code: 'PROTOCOL_CONNECTION_LOST' }));
  // mysql2 sees no command running and reports a lost connection as an 'error' event on the
  // connection itself: the closed socket already fails this read.
  const onConnectionError = (): void => {};

  /** One whole (logical) packet; returns false once the result set has ended. */
  const packet = (data: Buffer, start: number, stop: number, long: boolean): boolean => {
    const first = data[start];
    if (first === 0xff) {
      end(parseErrPacket(data, start, stop));
      return false;
    }
    switch (phase) {
      case 'rows':
        // 0xfe starts a row only as the 8-byte length of a value of 16 MiB or more (a long packet).
        if (first === 0xfe && !long) {
          end();
          return false;
        }
        row(data, start, stop);
        return true;
      case 'count': {
        const n = first! < 0xfb ? first! : first === 0xfc ? data.readUInt16LE(start + 1) : -1;
        if (n !== columns) {
          end(new Error(`mariadb: expected a result set of ${columns} columns, the server's reply starts with byte ${first}`));
          return false;
        }
        columnsLeft = n;
        phase = 'columns';
        return true;
      }
      case 'columns':
        if (--columnsLeft === 0) phase = 'columnsEnd';
        return true;
      case 'columnsEnd':
        phase = 'rows';
        // The EOF after the column definitions (absent when the client asked for CLIENT_DEPRECATE_EOF).
        if (first === 0xfe && stop - start < 9) return true;
        return packet(data, start, stop, long);
    }
  };

  /** A physical packet's payload; gathers packets split at 16 MiB. */
  const payload = (data: Buffer, start: number, stop: number): boolean => {
    if (pieces === null && stop - start < MAX_PAYLOAD) return packet(data, start, stop, false);
    (pieces ??= []).push(Buffer.from(data.subarray(start, stop)));
    if (stop - start === MAX_PAYLOAD) return true;
    const whole = Buffer.concat(pieces);
    pieces = null;
    return packet(whole, 0, whole.length, true);
  };

  const onData = (chunk: Buffer): void => {
    if (finished) return;
    const size = chunk.length;
    let p = 0;
    try {
      if (carried > 0) {
        // Complete the packet carried over from the last chunk: first its header, then its payload.
        let buf = carry!;
        if (carried < 4) {
          const n = Math.min(4 - carried, size);
          chunk.copy(buf, carried, 0, n);
          carried += n;
          p = n;
          if (carried < 4) return;
        }
        const len = buf[0]! | (buf[1]! << 8) | (buf[2]! << 16);
        if (buf.length < 4 + len) {
          const bigger = Buffer.allocUnsafe(4 + len);
          buf.copy(bigger, 0, 0, carried);
          carry = buf = bigger;
        }
        const n = Math.min(4 + len - carried, size - p);
        chunk.copy(buf, carried, p, p + n);
        carried += n;
        p += n;
        if (carried < 4 + len) return;
        carried = 0;
        if (!payload(buf, 4, 4 + len)) return leftover(chunk, p);
      }
      while (size - p >= 4) {
        const len = chunk[p]! | (chunk[p + 1]! << 8) | (chunk[p + 2]! << 16);
        const stop = p + 4 + len;
        if (stop > size) break;
        if (!payload(chunk, p + 4, stop)) return leftover(chunk, stop);
        p = stop;
      }
      if (p < size) {
        const rest = size - p;
        if (!carry || carry.length < rest) carry = Buffer.allocUnsafe(Math.max(CARRY_BYTES, rest));
        chunk.copy(carry, 0, p, size);
        carried = rest;
      }
    } catch (err) {
      end(err);
    }
  };
  /** Bytes after the end of the result set (none are expected) go to mysql2 as they would have. */
  const leftover = (chunk: Buffer, from: number): void => {
    if (from < chunk.length && !stream.destroyed) stream.emit('data', Buffer.from(chunk.subarray(from)));
  };

  if (sinkMode) {
    rowStream[kSink] = onData;
  } else {
    stream.removeAllListeners('data');
    stream.on('data', onData);
  }
  stream.on('close', onClose);
  raw.on('error', onConnectionError);

  const text = Buffer.from(sql, 'utf8');
  if (text.length + 1 >= MAX_PAYLOAD) {
    end(new Error(`mariadb: a ${text.length}-byte query is too long for one packet`));
  } else {
    const out = Buffer.allocUnsafe(5 + text.length);
    out.writeUIntLE(text.length + 1, 0, 3);
    out[3] = 0; // sequence id: a new command
    out[4] = COM_QUERY;
    text.copy(out, 5);
    stream.write(out);
  }
  return {
    done,
    pause: () => stream.pause(),
    resume: () => stream.resume(),
    fail: (err) => end(err),
  };
}
