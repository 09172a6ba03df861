// Backup: a point-in-time RDB received over the replication protocol, as a replica would get it,
// streamed into the repository. No access to the server's disk is needed.
import { BunkerError } from '../../core/errors.js';
import type { BackupContext, BackupSession } from '../engine.js';
import type { ServiceArtifact } from '../../repo/types.js';
import { Crc64 } from './crc64.js';
import { RdbParser, type RdbEvent } from './rdb.js';
import { RespConnection, RedisReplyError, replyText } from './resp.js';
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

const WRITE_BATCH = 1 << 20;

export class RedisBackupSession implements BackupSession {
  private control: RespConnection | null = null;
  private replica: RespConnection | null = null;
  private redisVersion = '';
  /** repl-diskless-sync-delay as found, while Bunker has it changed; null when unchanged. */
  private changedDelay: string | null = null;
  private canConfigure = false;
  private originalDelay = '0';
  private disklessSync = true;
  private pinned = false;
  private closed = false;
  private early: Buffer[] = [];
  private rawListener: ((chunk: Buffer) => void) | null = null;

  constructor(
    private readonly name: string,
    private readonly target: RedisTarget,
    private readonly ctx: BackupContext,
  ) {}

  async prepare(): Promise<void> {
    this.control = await RespConnection.connect(this.target, { db: null });
    const info = replyText(await this.control.command(['INFO', 'server']));
    this.redisVersion = /redis_version:([^\r\n]+)/.exec(info)?.[1] ?? 'unknown';
    try {
      const delay = (await this.control.command(['CONFIG', 'GET', 'repl-diskless-sync-delay'])) as Buffer[];
      const diskless = (await this.control.command(['CONFIG', 'GET', 'repl-diskless-sync'])) as Buffer[];
      this.originalDelay = delay[1]?.toString() ?? '0';
      this.disklessSync = diskless[1]?.toString() !== 'no';
      this.canConfigure = true;
    } catch (err) {
      if (!(err instanceof RedisReplyError)) throw err;
      // Managed services often rename or forbid CONFIG: then the server's delay is sat out.
      this.ctx.log.warn(`${this.name}: CONFIG is not available (${err.message}); the backup waits out repl-diskless-sync-delay`);
    }
    this.replica = await RespConnection.connect(this.target, { db: null });
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
    if (this.canConfigure && this.disklessSync && this.originalDelay !== '0') {
      await this.control.command(['CONFIG', 'SET', 'repl-diskless-sync-delay', '0']);
      this.changedDelay = this.originalDelay;
    }
    try {
      await new Promise<void>((resolve, reject) => {
        let line = Buffer.alloc(0);
        let settled = false;
        const onAbort = () => finish(new BunkerError('aborted', `${this.name}: backup cancelled`));
        const finish = (err?: Error) => {
          if (settled) return;
          settled = true;
          this.ctx.signal.removeEventListener('abort', onAbort);
          if (err) reject(err);
          else resolve();
        };
        this.ctx.signal.addEventListener('abort', onAbort);
        replica.takeRaw((chunk) => {
          if (settled) {
            if (this.rawListener) this.rawListener(chunk);
            else this.early.push(chunk);
            return;
          }
          if (chunk.length === 0) return finish(replica.error ?? new BunkerError('unreachable', `${this.name}: connection closed`));
          line = Buffer.concat([line, chunk]);
          // The server may send bare newlines as keep-alives before answering.
          let start = 0;
          while (line[start] === 0x0a) start++;
          const end = line.indexOf('\r\n', start);
          if (end < 0) return;
          const text = line.toString('utf8', start, end);
          const rest = line.subarray(end + 2);
          if (text.startsWith('+FULLRESYNC')) {
            if (rest.length) this.early.push(Buffer.from(rest));
            return finish();
          }
          finish(
            new BunkerError('engine', `${this.name}: the server refused to send a snapshot: ${text}`, {
              hint: text.includes('NOPERM')
                ? 'The user needs the SYNC/PSYNC and REPLCONF commands (ACL +psync +replconf +sync).'
                : 'Check that the server accepts replicas (not a replica-only proxy, no rename of PSYNC).',
            }),
          );
        });
        replica.writeRaw(['PSYNC', '?', '-1']);
      });
      this.pinned = true;
    } finally {
      await this.restoreDelay();
    }
  }

  private async restoreDelay(): Promise<void> {
    if (this.changedDelay === null || !this.control) return;
    const value = this.changedDelay;
    this.changedDelay = null;
    try {
      await this.control.command(['CONFIG', 'SET', 'repl-diskless-sync-delay', value]);
    } catch (err) {
      this.ctx.log.error(`${this.name}: could not set repl-diskless-sync-delay back to ${value}: ${(err as Error).message}`);
    }
  }

  async stream(): Promise<ServiceArtifact> {
    if (!this.pinned || !this.replica) throw new BunkerError('internal', 'redis backup: stream() before pin()');
    const label = `redis service ${this.name}`;
    const parser = new RdbParser(label, this.target.db === null);
    const selected = this.target.db;
    const writer = this.ctx.repo.writeStream({ label: `redis:${this.name}` });
    const writerFailed = new Promise<never>((_, reject) => writer.once('error', reject));
    writerFailed.catch(() => {});
    const outCrc = new Crc64();
    const dbs: Record<number, number> = {};
    let functions = 0;
    let batch: Buffer[] = [];
    let batchBytes = 0;
    let outBytes = 0;
    let received = 0;
    let currentDb = 0;
    let rdbVersion = 0;

    const emit = async (b: Buffer) => {
      batch.push(b);
      batchBytes += b.length;
      if (batchBytes >= WRITE_BATCH) await flushBatch();
    };
    const flushBatch = async () => {
      if (batchBytes === 0) return;
      const data = Buffer.concat(batch, batchBytes);
      batch = [];
      batchBytes = 0;
      outBytes += data.length;
      if (!writer.write(data)) {
        await Promise.race([new Promise((r) => writer.once('drain', r)), writerFailed]);
      }
    };

    // With a db index in the URL the stored RDB holds that database alone: header, aux fields, that
    // db's section, EOF, and a trailer recomputed over what was kept.
    const keep = (ev: RdbEvent): boolean => {
      if (selected === null) return true;
      switch (ev.kind) {
        case 'header':
        case 'aux':
        case 'eof':
          return true;
        case 'selectdb':
          return ev.db === selected;
        case 'resizedb':
        case 'key':
          return currentDb === selected;
        default:
          return false; // functions and module aux data belong to the instance, not one db
      }
    };

    const handle = async (events: RdbEvent[], chunk: Buffer) => {
      if (selected === null) {
        // Whole instance: the bytes are stored as received; events only feed the counts.
        for (const ev of events) {
          if (ev.kind === 'header') rdbVersion = ev.version;
          else if (ev.kind === 'function') functions++;
        }
        if (chunk.length) await emit(chunk);
        return;
      }
      for (const ev of events) {
        if (ev.kind === 'selectdb') currentDb = ev.db;
        if (ev.kind === 'header') rdbVersion = ev.version;
        if (!keep(ev)) continue;
        if (ev.kind === 'key') dbs[ev.db] = (dbs[ev.db] ?? 0) + 1;
        if (ev.kind === 'eof') {
          outCrc.update(ev.raw.subarray(0, ev.raw.length - 8));
          await emit(ev.raw.subarray(0, ev.raw.length - 8));
          await emit(outCrc.toBufferLE());
        } else {
          outCrc.update(ev.raw);
          await emit(ev.raw);
        }
      }
    };

    const source = this.readPayload(label);
    try {
      for await (const chunk of source) {
        received += chunk.length;
        await handle(parser.push(chunk), chunk);
        this.ctx.progress({ bytes: received });
        if (parser.done) break;
      }
      parser.finish();
      for (const [db, n] of parser.keysPerDb) dbs[db] = n;
      if (parser.trailing.length) throw new BunkerError('engine', `${label}: ${parser.trailing.length} unexpected bytes after the RDB`);
      await flushBatch();
      writer.end();
      const ref = await Promise.race([writer.done(), writerFailed]);
      const keys = Object.values(dbs).reduce((a, b) => a + b, 0);
      const meta: RedisBackupMeta = {
        redisVersion: this.redisVersion,
        rdbVersion,
        db: selected,
        dbs: Object.fromEntries(Object.entries(dbs).map(([db, n]) => [String(db), n])),
        keys,
        crc64: selected === null ? parser.crc.toHex() : outCrc.toHex(),
        functions,
      };
      this.ctx.log.info(`${this.name}: stored ${keys} keys, ${outBytes} bytes of RDB (received ${received})`);
      return {
        engine: 'redis',
        format: REDIS_FORMAT,
        streams: { rdb: ref },
        trees: {},
        meta: meta as unknown as Record<string, unknown>,
        size: outBytes,
        warnings: [],
      };
    } catch (err) {
      writer.destroy();
      throw err;
    } finally {
      await source.return?.(undefined);
    }
  }

  /** Yields the RDB bytes of the replication payload ($<len> or $EOF:<mark> framing). */
  private async *readPayload(label: string): AsyncGenerator<Buffer> {
    const queue: Buffer[] = [...this.early];
    this.early = [];
    let wake: (() => void) | null = null;
    let ended = false;
    this.rawListener = (chunk) => {
      if (chunk.length === 0) ended = true;
      else queue.push(chunk);
      wake?.();
    };
    const onAbort = () => {
      ended = true;
      wake?.();
    };
    this.ctx.signal.addEventListener('abort', onAbort);
    const next = async (): Promise<Buffer | null> => {
      while (queue.length === 0) {
        if (ended || this.ctx.signal.aborted) return null;
        await new Promise<void>((r) => (wake = r));
        wake = null;
      }
      return queue.shift()!;
    };
    try {
      // Header line, after optional keep-alive newlines.
      let head = Buffer.alloc(0);
      let rest: Buffer;
      for (;;) {
        const chunk = await next();
        if (!chunk) throw this.endedError(label);
        head = Buffer.concat([head, chunk]);
        let s = 0;
        while (head[s] === 0x0a) s++;
        head = head.subarray(s);
        const end = head.indexOf('\r\n');
        if (end >= 0) {
          const line = head.toString('latin1', 0, end);
          rest = head.subarray(end + 2);
          if (!line.startsWith('$')) throw new BunkerError('engine', `${label}: unexpected replication reply "${line.slice(0, 80)}"`);
          if (line.startsWith('$EOF:')) {
            const mark = Buffer.from(line.slice(5), 'latin1');
            yield* this.untilMark(rest, next, mark, label);
          } else {
            const total = Number(line.slice(1));
            if (!Number.isSafeInteger(total) || total < 0) throw new BunkerError('engine', `${label}: bad payload length "${line}"`);
            let left = total;
            let chunk2: Buffer | null = rest;
            while (left > 0) {
              if (!chunk2 || chunk2.length === 0) {
                chunk2 = await next();
                if (!chunk2) throw this.endedError(label);
              }
              const part = chunk2.subarray(0, left);
              left -= part.length;
              chunk2 = chunk2.subarray(part.length);
              yield part;
            }
          }
          return;
        }
      }
    } finally {
      this.ctx.signal.removeEventListener('abort', onAbort);
      this.rawListener = null;
    }
  }

  /** Diskless payloads end with the 40-byte mark announced in the header; hold back that many bytes. */
  private async *untilMark(first: Buffer, next: () => Promise<Buffer | null>, mark: Buffer, label: string): AsyncGenerator<Buffer> {
    let tail = first;
    for (;;) {
      if (tail.length >= mark.length && tail.subarray(tail.length - mark.length).equals(mark)) {
        yield tail.subarray(0, tail.length - mark.length);
        return;
      }
      if (tail.length > mark.length) {
        yield tail.subarray(0, tail.length - mark.length);
        tail = tail.subarray(tail.length - mark.length);
      }
      const chunk = await next();
      if (!chunk) throw this.endedError(label);
      tail = Buffer.concat([tail, chunk]);
    }
  }

  private endedError(label: string): BunkerError {
    if (this.ctx.signal.aborted) return new BunkerError('aborted', `${label}: backup cancelled`);
    return new BunkerError('unreachable', `${label}: the server closed the replication connection before the snapshot was complete`, {
      hint: 'Check the server log: the fork may have failed (memory) or the replica output buffer limit was hit.',
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.restoreDelay();
    this.replica?.close();
    this.control?.close();
  }
}
