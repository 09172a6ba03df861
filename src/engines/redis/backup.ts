// Backup: a point-in-time RDB received over the replication protocol, as a replica would get it,
// streamed into the repository. No access to the server's disk is needed.
import { BunkerError } from '../../core/errors.js';
import type { BackupContext, BackupSession } from '../engine.js';
import type { ServiceArtifact, StreamWriter } from '../../repo/types.js';
import { Crc64 } from './crc64.js';
import { RdbParser, type RdbEvent } from './rdb.js';
import { RespConnection, RedisReplyError, replyText, type RawSink } from './resp.js';
import type { RedisTarget } from './url.js';

export const REDIS_FORMAT = 1;

/** What the artifact's meta holds (see docs/design/engine-redis.md). */
export interface RedisBackupMeta {
  redisVersion: string;
  rdbVersion: number;
  /** The db index backed up alone, or null for the whole instance. */
  db: number | null;
  /** Keys per db index in the stored RDB. */
  dbs: Record<string, number>;
  keys: number;
  /** CRC64 of the stored RDB body, as in its trailer. */
  crc64: string;
  functions: number;
}

/** The repository gets the RDB in pieces of about this size (whole blocks at most). */
const WRITE_BATCH = 1 << 20;
/** Socket reads land in blocks of this size; a read always gets at least MIN_READ of room. */
const BLOCK_BYTES = 4 << 20;
const MIN_READ = 256 << 10;
/** Progress is reported every this many bytes. */
const PROGRESS_BYTES = 4 << 20;
/**
 * The socket is paused while the repository has this much waiting: room for it to fall behind for a
 * moment without stopping the server's child, which is the one part that cannot be spread over cores.
 */
const MAX_WAITING = 8 << 20;

/** What the backup turns off for the moment of the fork, with the value it sets. */
const FORK_SETTINGS = { delay: ['repl-diskless-sync-delay', '0'], compression: ['rdbcompression', 'no'] } as const;

export class RedisBackupSession implements BackupSession {
  private control: RespConnection | null = null;
  private replica: RespConnection | null = null;
  private receiver: ReplicationReceiver | null = null;
  private redisVersion = '';
  /** Server settings as found, for the ones Bunker has changed and not yet set back. */
  private changed = new Map<string, string>();
  private canConfigure = false;
  private originalDelay = '0';
  private originalCompression = 'no';
  private disklessSync = true;
  private pinned = false;
  private closed = false;

  constructor(
    private readonly name: string,
    private readonly target: RedisTarget,
    private readonly ctx: BackupContext,
    /** 'off': rdbcompression is turned off for the fork (see the engine doc); 'server': left as it is. */
    private readonly rdbCompression: 'off' | 'server' = 'off',
  ) {}

  async prepare(): Promise<void> {
    this.control = await RespConnection.connect(this.target, { db: null });
    const info = replyText(await this.control.command(['INFO', 'server']));
    this.redisVersion = /redis_version:([^\r\n]+)/.exec(info)?.[1] ?? 'unknown';
    try {
      const get = async (name: string) => ((await this.control!.command(['CONFIG', 'GET', name])) as Buffer[])[1]?.toString();
      const [delay, diskless, compression] = await Promise.all([get('repl-diskless-sync-delay'), get('repl-diskless-sync'), get('rdbcompression')]);
      this.originalDelay = delay ?? '0';
      this.disklessSync = diskless !== 'no';
      this.originalCompression = compression ?? 'no';
      this.canConfigure = true;
    } catch (err) {
      if (!(err instanceof RedisReplyError)) throw err;
      // Managed services often rename or forbid CONFIG: then the server's delay is sat out.
      this.ctx.log.warn(`${this.name}: CONFIG is not available (${err.message}); the backup waits out repl-diskless-sync-delay`);
    }
    this.replica = await RespConnection.connect(this.target, { db: null, rawReads: true });
    await this.replica.command(['REPLCONF', 'capa', 'eof', 'capa', 'psync2']);
    // Redis 7.0+: send the RDB only, no replication stream afterwards. 6.2 refuses; we hang up after the RDB anyway.
    await this.replica.command(['REPLCONF', 'rdb-only', '1']).catch((err: unknown) => {
      if (!(err instanceof RedisReplyError)) throw err;
    });
  }

  /** Asks for a full sync; returns once the server has forked (its +FULLRESYNC reply). */
  async pin(): Promise<void> {
    const replica = this.replica;
    if (!replica || !this.control) throw new BunkerError('internal', 'redis backup: pin() before prepare()');
    // Only for diskless sync: there the RDB goes to the replicas alone. (With disk-based sync the
    // server writes its own dump file from the same fork.)
    const changes: (readonly [string, string, string])[] = [];
    if (this.canConfigure && this.disklessSync) {
      if (this.originalDelay !== '0') changes.push([...FORK_SETTINGS.delay, this.originalDelay]);
      if (this.rdbCompression === 'off' && this.originalCompression !== 'no') changes.push([...FORK_SETTINGS.compression, this.originalCompression]);
    }
    try {
      await Promise.all(
        changes.map(async ([name, value, original]) => {
          await this.control!.command(['CONFIG', 'SET', name, value]);
          this.changed.set(name, original);
        }),
      );
      const receiver = new ReplicationReceiver(`redis service ${this.name}`, this.target.db, replica, this.ctx);
      this.receiver = receiver;
      replica.readInto(receiver);
      replica.writeRaw(['PSYNC', '?', '-1']);
      await receiver.forked;
      this.pinned = true;
    } finally {
      await this.restoreSettings();
    }
  }

  private async restoreSettings(): Promise<void> {
    if (this.changed.size === 0 || !this.control) return;
    const changed = [...this.changed];
    this.changed.clear();
    await Promise.all(
      changed.map(async ([name, value]) => {
        try {
          await this.control!.command(['CONFIG', 'SET', name, value]);
        } catch (err) {
          this.ctx.log.error(`${this.name}: could not set ${name} back to ${value}: ${(err as Error).message}`);
        }
      }),
    );
  }

  async stream(): Promise<ServiceArtifact> {
    const receiver = this.receiver;
    if (!this.pinned || !receiver) throw new BunkerError('internal', 'redis backup: stream() before pin()');
    const writer = this.ctx.repo.writeStream({ label: `redis:${this.name}` });
    const writerFailed = new Promise<never>((_, reject) => writer.once('error', reject));
    writerFailed.catch(() => {});
    try {
      receiver.attach(writer);
      await Promise.race([receiver.finished, writerFailed]);
      writer.end();
      const ref = await Promise.race([writer.done(), writerFailed]);
      const meta = receiver.meta(this.redisVersion);
      this.ctx.log.info(`${this.name}: stored ${meta.keys} keys, ${receiver.outBytes} bytes of RDB (received ${receiver.received})`);
      return {
        engine: 'redis',
        format: REDIS_FORMAT,
        streams: { rdb: ref },
        trees: {},
        meta: meta as unknown as Record<string, unknown>,
        size: receiver.outBytes,
        warnings: [],
      };
    } catch (err) {
      receiver.fail(err as Error);
      writer.destroy();
      throw err;
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.restoreSettings();
    this.receiver?.fail(new BunkerError('aborted', `redis service ${this.name}: backup closed`));
    this.replica?.close();
    this.control?.close();
  }
}

type Phase = 'reply' | 'header' | 'payload' | 'mark' | 'done' | 'failed';

/**
 * Receives the replica's side of a full sync: the +FULLRESYNC line, the payload header, the RDB and its
 * end mark. Socket reads land in large blocks (straight from the kernel on plain TCP); the RDB is
 * walked (structure, key counts, CRC64) where it lies, and the parts to keep go to the repository as
 * slices of those blocks: no copy, no allocation per read or per key. The repository's pace pauses
 * the socket, and the server's child waits for us instead of memory filling up.
 */
class ReplicationReceiver implements RawSink {
  private block = Buffer.allocUnsafeSlow(BLOCK_BYTES);
  /** Stream offset (counted from the first byte after PSYNC) of block[0]. */
  private blockBase = 0;
  /** Bytes received in block[0, end); parsed (and decided) up to pos. */
  private end = 0;
  private pos = 0;
  private phase: Phase = 'reply';
  private failure: Error | null = null;
  private readonly parser: RdbParser;
  private readonly events: RdbEvent[] = [];
  /** $EOF:<mark> framing: the 40-byte mark after the RDB; $<len> framing: the payload's end (stream offset). */
  private mark: Buffer | null = null;
  private payloadEnd = Infinity;
  /** Stream offset of the RDB's first byte (the parser counts from there). */
  private payloadStart = 0;
  /** The kept range waiting to be handed on, in block positions (outFrom === outTo: none). */
  private outFrom = 0;
  private outTo = 0;
  private readonly outCrc = new Crc64();
  private currentDb = 0;
  private rdbVersion = 0;
  private functions = 0;
  private writer: StreamWriter | null = null;
  /** Pieces kept before stream() attached the writer. */
  private queued: Buffer[] = [];
  private paused = false;
  private reportedAt = 0;
  received = 0;
  outBytes = 0;

  private settleForked!: { resolve: () => void; reject: (err: Error) => void };
  private settleFinished!: { resolve: () => void; reject: (err: Error) => void };
  /** Resolves at +FULLRESYNC: the server has forked. */
  readonly forked = new Promise<void>((resolve, reject) => (this.settleForked = { resolve, reject }));
  /** Resolves once the whole RDB and its end mark have arrived and been handed on. */
  readonly finished = new Promise<void>((resolve, reject) => (this.settleFinished = { resolve, reject }));

  constructor(
    private readonly label: string,
    /** The db index kept alone, or null for the whole instance. */
    private readonly selected: number | null,
    private readonly conn: RespConnection,
    private readonly ctx: BackupContext,
  ) {
    this.parser = new RdbParser(label, true);
    this.forked.catch(() => {});
    this.finished.catch(() => {});
    const onAbort = () => this.fail(new BunkerError('aborted', `${label}: backup cancelled`));
    ctx.signal.addEventListener('abort', onAbort, { once: true });
    void this.finished.then(
      () => ctx.signal.removeEventListener('abort', onAbort),
      () => ctx.signal.removeEventListener('abort', onAbort),
    );
    if (ctx.signal.aborted) onAbort();
  }

  space(): Buffer {
    if (this.block.length - this.end >= MIN_READ) return this.block.subarray(this.end);
    // A new block: what is kept so far leaves as a slice of the old one; the unparsed tail (an entry
    // that has not fully arrived) moves over, into a block large enough for all of that entry.
    this.flushOut();
    const tail = this.end - this.pos;
    const need = this.phase === 'payload' ? Math.max(this.parser.needed, tail) : tail;
    const next = Buffer.allocUnsafeSlow(Math.max(BLOCK_BYTES, need + MIN_READ));
    this.block.copy(next, 0, this.pos, this.end);
    this.blockBase += this.pos;
    this.block = next;
    this.end = tail;
    this.pos = 0;
    this.outFrom = this.outTo = 0;
    return next.subarray(tail);
  }

  filled(n: number): void {
    if (this.phase === 'failed' || this.phase === 'done') return;
    this.end += n;
    this.received += n;
    try {
      this.process();
    } catch (err) {
      this.fail(err as Error);
    }
    if (this.received - this.reportedAt >= PROGRESS_BYTES) {
      this.reportedAt = this.received;
      this.ctx.progress({ bytes: this.received });
    }
  }

  ended(err: Error): void {
    if (this.phase === 'done' || this.phase === 'failed') return;
    if (this.phase === 'reply') return this.fail(err);
    this.fail(
      this.ctx.signal.aborted
        ? new BunkerError('aborted', `${this.label}: backup cancelled`)
        : new BunkerError('unreachable', `${this.label}: the server closed the replication connection before the snapshot was complete`, {
            hint: 'Check the server log: the fork may have failed (memory) or the replica output buffer limit was hit.',
          }),
    );
  }

  fail(err: Error): void {
    if (this.phase === 'done' || this.phase === 'failed') return;
    this.phase = 'failed';
    this.failure = err;
    this.queued = [];
    this.conn.pause();
    this.settleForked.reject(err);
    this.settleFinished.reject(err);
  }

  /** From now on kept pieces go to `writer` (those kept before go first). */
  attach(writer: StreamWriter): void {
    if (this.failure) throw this.failure;
    this.writer = writer;
    writer.on('drain', () => {
      if (!this.paused) return;
      this.paused = false;
      if (this.phase !== 'failed') this.conn.resume();
    });
    const queued = this.queued;
    this.queued = [];
    for (const piece of queued) this.out(piece);
    if (this.phase === 'done') this.settleFinished.resolve();
  }

  meta(redisVersion: string): RedisBackupMeta {
    const counts = this.parser.keysPerDb;
    const dbs: Record<string, number> = {};
    for (const [db, n] of [...counts].sort((a, b) => a[0] - b[0])) {
      if (this.selected === null || db === this.selected) dbs[String(db)] = n;
    }
    return {
      redisVersion,
      rdbVersion: this.rdbVersion,
      db: this.selected,
      dbs,
      keys: Object.values(dbs).reduce((a, b) => a + b, 0),
      crc64: this.selected === null ? this.parser.crc.toHex() : this.outCrc.toHex(),
      functions: this.functions,
    };
  }

  private process(): void {
    for (;;) {
      switch (this.phase) {
        case 'reply': {
          const line = this.line();
          if (line === null) return;
          if (!line.startsWith('+FULLRESYNC')) {
            throw new BunkerError('engine', `${this.label}: the server refused to send a snapshot: ${line}`, {
              hint: line.includes('NOPERM')
                ? 'The user needs the SYNC/PSYNC and REPLCONF commands (ACL +psync +replconf +sync).'
                : 'Check that the server accepts replicas (not a replica-only proxy, no rename of PSYNC).',
            });
          }
          this.phase = 'header';
          this.settleForked.resolve();
          break;
        }
        case 'header': {
          const line = this.line();
          if (line === null) return;
          if (line.startsWith('$EOF:')) {
            this.mark = Buffer.from(line.slice(5), 'latin1');
          } else {
            const total = line.startsWith('$') ? Number(line.slice(1)) : NaN;
            if (!Number.isSafeInteger(total) || total < 0) throw new BunkerError('engine', `${this.label}: unexpected replication reply "${line.slice(0, 80)}"`);
            this.payloadEnd = this.blockBase + this.pos + total;
          }
          this.payloadStart = this.blockBase + this.pos;
          this.outFrom = this.outTo = this.pos;
          this.phase = 'payload';
          break;
        }
        case 'payload': {
          const limit = Math.min(this.end, this.payloadEnd - this.blockBase);
          if (limit - this.pos >= this.parser.needed) {
            const events = this.events;
            events.length = 0;
            const from = this.pos;
            const to = this.parser.walk(this.block, from, limit, events);
            this.decide(from, to, events);
            this.pos = to;
          }
          if (!this.parser.done) {
            if (this.blockBase + limit === this.payloadEnd) {
              throw new BunkerError('corrupt', `${this.label}: the RDB stream is truncated at byte ${this.payloadEnd - this.payloadStart}`);
            }
            if (this.outTo - this.outFrom >= WRITE_BATCH) this.flushOut();
            return;
          }
          this.phase = 'mark';
          break;
        }
        case 'mark': {
          if (this.mark) {
            if (this.end - this.pos < this.mark.length) return;
            // Redis 6.2 (no rdb-only) goes on with the replication stream after the mark: not ours.
            if (!this.block.subarray(this.pos, this.pos + this.mark.length).equals(this.mark)) {
              throw new BunkerError('engine', `${this.label}: unexpected bytes after the RDB (no end mark)`);
            }
          } else if (this.blockBase + this.pos !== this.payloadEnd) {
            throw new BunkerError('engine', `${this.label}: ${this.payloadEnd - this.blockBase - this.pos} unexpected bytes after the RDB`);
          }
          this.flushOut();
          this.phase = 'done';
          this.conn.pause();
          if (this.writer) this.settleFinished.resolve();
          return;
        }
        default:
          return;
      }
    }
  }

  /** The next CRLF-terminated line at pos (after keep-alive newlines), or null when incomplete. */
  private line(): string | null {
    let p = this.pos;
    while (p < this.end && this.block[p] === 0x0a) p++;
    const eol = this.block.subarray(0, this.end).indexOf('\r\n', p, 'latin1');
    if (eol < 0) {
      if (this.end - p > 64 * 1024) throw new BunkerError('engine', `${this.label}: no reply line from the server`);
      return null;
    }
    this.pos = eol + 2;
    return this.block.toString('latin1', p, eol);
  }

  /**
   * Which of block[from, to) is stored. Whole instance: all of it. One db: the header and aux fields,
   * that db's section, and the EOF opcode followed by a checksum of what was kept.
   */
  private decide(from: number, to: number, events: RdbEvent[]): void {
    const all = this.selected === null;
    let at = from;
    const shift = this.payloadStart - this.blockBase; // parser offsets → block positions
    for (const ev of events) {
      const start = ev.at + shift;
      const stop = start + ev.raw.length;
      // Between events lie only keys, of the db selected last.
      if (start > at && (all || this.currentDb === this.selected)) this.keep(at, start);
      switch (ev.kind) {
        case 'header':
          this.rdbVersion = ev.version;
          this.keep(start, stop);
          break;
        case 'aux':
          this.keep(start, stop);
          break;
        case 'selectdb':
          this.currentDb = ev.db;
          if (all || ev.db === this.selected) this.keep(start, stop);
          break;
        case 'resizedb':
          if (all || this.currentDb === this.selected) this.keep(start, stop);
          break;
        case 'function':
          this.functions++;
          if (all) this.keep(start, stop);
          break;
        case 'module-aux':
          // Functions and module aux data belong to the instance, not to one db.
          if (all) this.keep(start, stop);
          break;
        case 'eof':
          if (all) {
            this.keep(start, stop);
          } else {
            this.keep(start, start + 1);
            this.flushOut();
            this.out(this.outCrc.toBufferLE());
          }
          break;
        case 'key':
          break; // count-only parsing returns none
      }
      at = stop;
    }
    if (to > at && (all || this.currentDb === this.selected)) this.keep(at, to);
  }

  /** Marks block[from, to) as stored, merging it with the range before when they touch. */
  private keep(from: number, to: number): void {
    if (to <= from) return;
    if (this.selected !== null) this.outCrc.update(this.block.subarray(from, to));
    if (from === this.outTo && this.outTo > this.outFrom) {
      this.outTo = to;
      return;
    }
    this.flushOut();
    this.outFrom = from;
    this.outTo = to;
  }

  private flushOut(): void {
    if (this.outTo > this.outFrom) this.out(this.block.subarray(this.outFrom, this.outTo));
    this.outFrom = this.outTo = this.pos;
  }

  private out(piece: Buffer): void {
    this.outBytes += piece.length;
    if (!this.writer) {
      this.queued.push(piece);
      return;
    }
    this.writer.write(piece);
    // 'drain' (when all of it has been taken) resumes.
    if (this.writer.writableLength >= MAX_WAITING && !this.paused) {
      this.paused = true;
      this.conn.pause();
    }
  }
}
