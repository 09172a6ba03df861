// Restore into a running server: each key of the stored RDB becomes a pipelined
// `RESTORE key ttl payload REPLACE ABSTTL` into an empty spare db index; once the whole stream has
// parsed and its CRC64 trailer matched, commit() swaps the spare in with SWAPDB inside MULTI/EXEC and
// empties the spare (which then holds the old data). Clients never see a half-restored database.
import { BunkerError } from '../../core/errors.js';
import type { RestoreContext, RestoreSession } from '../engine.js';
import type { ServiceArtifact } from '../../repo/types.js';
import { REDIS_FORMAT, type RedisBackupMeta } from './backup.js';
import { decodeStringValue, keyForMessage, RdbParser, restorePayloadOf } from './rdb.js';
import { RespConnection, RedisReplyError, replyText, type Reply } from './resp.js';
import type { RedisTarget } from './url.js';

const MAX_IN_FLIGHT = 4096;
/** Plain strings without expiry go in MSET batches of this many keys (or this many bytes): far fewer commands. */
const MSET_KEYS = 200;
const MSET_BYTES = 1 << 20;

export class RedisRestoreSession implements RestoreSession {
  private conn: RespConnection | null = null;
  /** Source db index in the RDB → target db index. */
  private mapping = new Map<number, number>();
  /** Target db index → the spare db index loaded for it. */
  private spares = new Map<number, number>();
  /** Target db indexes to empty at commit (whole-instance restore: dbs the backup does not have). */
  private toEmpty: number[] = [];
  private loaded = new Map<number, number>();
  private staged = false;
  private finished = false;
  private readonly meta: RedisBackupMeta;

  constructor(
    private readonly name: string,
    private readonly target: RedisTarget,
    private readonly spareDb: number | undefined,
    private readonly ctx: RestoreContext,
    private readonly artifact: ServiceArtifact,
  ) {
    if (artifact.engine !== 'redis' || artifact.format !== REDIS_FORMAT || !artifact.streams.rdb) {
      throw new BunkerError('target_mismatch', `${name}: the backup holds ${artifact.engine} data (format ${artifact.format}), not a Redis RDB`, {
        hint: 'Restore it onto a service of the type it was taken from.',
      });
    }
    this.meta = artifact.meta as unknown as RedisBackupMeta;
  }

  private async dbSize(conn: RespConnection, db: number): Promise<number> {
    await conn.command(['SELECT', db]);
    return Number(await conn.command(['DBSIZE']));
  }

  /** Chooses what goes where and claims empty spare db indexes. */
  private async plan(conn: RespConnection): Promise<void> {
    let databases = 16;
    try {
      const r = (await conn.command(['CONFIG', 'GET', 'databases'])) as Buffer[];
      if (r[1]) databases = Number(r[1].toString());
    } catch (err) {
      if (!(err instanceof RedisReplyError)) throw err;
      // CONFIG forbidden: probe SELECT downwards to find the highest index.
      for (databases = 16; databases > 1; databases--) {
        try {
          await conn.command(['SELECT', databases - 1]);
          break;
        } catch (e) {
          if (!(e instanceof RedisReplyError)) throw e;
        }
      }
    }
    const backupDbs = Object.keys(this.meta.dbs ?? {}).map(Number);
    if (this.target.db !== null) {
      // One logical db: the backup's single db (or, from a whole-instance backup, the same index).
      const source = this.meta.db ?? (backupDbs.length === 1 ? backupDbs[0]! : this.target.db);
      this.mapping.set(source, this.target.db);
    } else if (this.meta.db !== null && this.meta.db !== undefined) {
      // A single-db backup onto a whole-instance URL goes back to its own index; other dbs stay.
      this.mapping.set(this.meta.db, this.meta.db);
    } else {
      for (const db of backupDbs) this.mapping.set(db, db);
      // The instance becomes the backup: dbs it does not have are emptied at commit.
      for (let db = 0; db < databases; db++) if (!this.mapping.has(db)) this.toEmpty.push(db);
      if (this.mapping.size === 0) this.mapping.set(0, 0); // an empty backup still replaces db 0 atomically
    }
    for (const t of this.mapping.values()) {
      if (t >= databases) {
        throw new BunkerError('target_mismatch', `${this.name}: db index ${t} does not exist on ${this.target.display} (it has ${databases})`, {
          hint: 'Restore into an existing db index, or raise `databases` on the server.',
        });
      }
    }
    const targets = new Set(this.mapping.values());
    const candidates: number[] = [];
    if (this.spareDb !== undefined) candidates.push(this.spareDb);
    for (let db = databases - 1; db >= 0; db--) if (db !== this.spareDb) candidates.push(db);
    for (const t of targets) {
      let found: number | undefined;
      for (const db of candidates) {
        if (db >= databases || targets.has(db) || [...this.spares.values()].includes(db)) continue;
        if (this.target.db === null && this.mapping.size > 1 && !this.toEmpty.includes(db)) continue;
        const size = await this.dbSize(conn, db);
        if (size === 0) {
          found = db;
          break;
        }
        if (db === this.spareDb) {
          throw new BunkerError('engine', `${this.name}: spare_db ${db} on ${this.target.display} is not empty (${size} keys)`, {
            hint: 'Point spare_db at an empty db index, or empty it; Bunker never overwrites a db it did not fill.',
          });
        }
      }
      if (found === undefined) {
        throw new BunkerError('engine', `${this.name}: no empty spare db index on ${this.target.display} to stage the restore of db ${t} in`, {
          hint:
            databases <= 1
              ? 'The server has a single database (cluster mode or databases 1): an atomic restore needs `databases` of at least 2.'
              : 'Empty one db index the application does not use, or name one with spare_db.',
        });
      }
      this.spares.set(t, found);
    }
  }

  async stage(): Promise<void> {
    try {
      await this.load();
      this.staged = true;
    } catch (err) {
      await this.abort();
      throw err;
    }
  }

  private async load(): Promise<void> {
    const conn = await RespConnection.connect(this.target, { db: null });
    this.conn = conn;
    await this.plan(conn);
    const label = `redis service ${this.name}`;
    const parser = new RdbParser(label);
    const now = Date.now();
    let failure: Error | null = null;
    let selectedSpare = -1;
    let sourceDb = 0;
    let skippedExpired = 0;
    let functionsSkipped = 0;
    let bytes = 0;
    // Replies come back in order, so the keys of unanswered RESTOREs wait in a queue of their own
    // (one shared callback instead of a closure per key).
    const sentKeys: Buffer[] = [];
    let sentHead = 0;
    const onRestoreReply = (err: Error | null) => {
      const key = sentKeys[sentHead++]!;
      if (sentHead > 8192 && sentHead * 2 > sentKeys.length) {
        sentKeys.splice(0, sentHead);
        sentHead = 0;
      }
      if (err && !failure) {
        failure = new BunkerError('engine', `${label}: loading key ${keyForMessage(key)} failed: ${err.message}`, {
          hint: err.message.includes('payload version')
            ? `The backup was taken from Redis ${this.meta.redisVersion}; restore onto that version or newer.`
            : 'Check the server log and its memory limit (maxmemory).',
        });
      }
    };
    let mset: (string | Buffer)[] = ['MSET'];
    let msetBytes = 0;
    const flushMset = () => {
      if (mset.length === 1) return;
      sentKeys.push(Buffer.from(mset[1]!)); // the batch's first key names it in a message
      conn.send(mset, onRestoreReply);
      mset = ['MSET'];
      msetBytes = 0;
    };
    const stream = this.ctx.repo.readStream(this.artifact.streams.rdb!);
    try {
      for await (const chunk of stream as AsyncIterable<Buffer>) {
        if (this.ctx.signal.aborted) throw new BunkerError('aborted', `${label}: restore cancelled`);
        bytes += chunk.length;
        for (const ev of parser.push(chunk)) {
          if (ev.kind === 'selectdb') sourceDb = ev.db;
          else if (ev.kind === 'function') functionsSkipped++;
          if (ev.kind !== 'key') continue;
          const t = this.mapping.get(sourceDb);
          // After a failed RESTORE nothing more is sent, but the stream is still read to its end: when
          // the data is corrupt, the checksum error is the cause worth reporting.
          if (t === undefined || failure) continue;
          if (ev.expireMs !== null && ev.expireMs <= now) {
            skippedExpired++;
            continue;
          }
          const spare = this.spares.get(t)!;
          if (spare !== selectedSpare) {
            flushMset();
            sentKeys.push(Buffer.from(`(SELECT ${spare})`));
            conn.send(['SELECT', spare], onRestoreReply);
            selectedSpare = spare;
          }
          if (ev.type === 0) {
            // Strings are most keys of a cache: SET/MSET cost the server far less than RESTORE.
            const value = decodeStringValue(ev.raw, ev.valueStart);
            const key = Buffer.from(ev.key); // ev.key points into the parser's buffer
            if (ev.expireMs === null) {
              mset.push(key, value);
              msetBytes += key.length + value.length;
              if (mset.length > 2 * MSET_KEYS || msetBytes >= MSET_BYTES) flushMset();
            } else {
              sentKeys.push(key);
              conn.send(['SET', key, value, 'PXAT', ev.expireMs], onRestoreReply);
            }
            this.loaded.set(t, (this.loaded.get(t) ?? 0) + 1);
            if (conn.inFlight >= MAX_IN_FLIGHT) await conn.waitBelow(MAX_IN_FLIGHT / 2);
            continue;
          }
          const payload = restorePayloadOf(ev.type, ev.raw, ev.valueStart, parser.version);
          sentKeys.push(Buffer.from(ev.key)); // ev.key points into the parser's buffer
          conn.send(['RESTORE', ev.key, ev.expireMs ?? 0, payload, 'REPLACE', 'ABSTTL'], onRestoreReply);
          this.loaded.set(t, (this.loaded.get(t) ?? 0) + 1);
          if (conn.inFlight >= MAX_IN_FLIGHT) await conn.waitBelow(MAX_IN_FLIGHT / 2);
        }
        this.ctx.progress({ bytes, totalBytes: this.artifact.streams.rdb!.size });
      }
      flushMset();
      parser.finish();
      // Also catches damage where the server wrote no checksum (rdbchecksum no): the backup recorded its own.
      if (this.meta.crc64 && parser.crc.toHex() !== this.meta.crc64) {
        throw new BunkerError('corrupt', `${label}: the RDB does not match the checksum recorded at backup (${parser.crc.toHex()} ≠ ${this.meta.crc64})`, {
          hint: 'The backup cannot be restored as it is; restore an older backup, and run a repository check.',
        });
      }
      await conn.command(['PING']); // every RESTORE before it has been answered
      if (failure) throw failure;
    } catch (err) {
      // A corrupt stream explains a RESTORE failure it caused; otherwise the first failure wins.
      if (err instanceof BunkerError && err.code === 'corrupt') throw err;
      throw failure ?? err;
    } finally {
      stream.destroy();
    }
    // A key someone else wrote into a spare meanwhile would be swapped in with ours: refuse.
    for (const [t, spare] of this.spares) {
      const size = await this.dbSize(conn, spare);
      const expected = this.loaded.get(t) ?? 0;
      if (size > expected) {
        throw new BunkerError('engine', `${label}: spare db ${spare} holds ${size} keys but ${expected} were restored: another client wrote into it`, {
          hint: 'Make sure nothing uses the spare db index, then restore again.',
        });
      }
    }
    if (functionsSkipped) {
      this.ctx.log.warn(`${this.name}: the backup holds ${functionsSkipped} function libraries; Bunker does not restore them (load them with FUNCTION LOAD)`);
    }
    if (skippedExpired) this.ctx.log.info(`${this.name}: skipped ${skippedExpired} keys that had already expired`);
  }

  async commit(): Promise<void> {
    const conn = this.conn;
    if (!this.staged || !conn) throw new BunkerError('internal', 'redis restore: commit() before stage()');
    try {
      // One transaction: the swap and the emptying are atomic to every other client.
      const cmds: (string | number)[][] = [['MULTI']];
      for (const [t, spare] of this.spares) cmds.push(['SWAPDB', t, spare]);
      for (const db of [...this.toEmpty, ...this.spares.values()]) cmds.push(['SELECT', db], ['FLUSHDB', 'ASYNC']);
      cmds.push(['EXEC']);
      const replies = await Promise.all(cmds.map((c) => conn.command(c).catch((e: unknown) => e as Error)));
      const exec = replies[replies.length - 1] as Reply | Error;
      const problem = replies.find((r) => r instanceof Error) as Error | undefined;
      if (problem || !Array.isArray(exec)) {
        throw new BunkerError('engine', `${this.name}: SWAPDB on ${this.target.display} failed: ${problem?.message ?? replyText(exec as Reply)}`, {
          hint: 'SWAPDB is not available in cluster mode or when renamed; the target is unchanged.',
        });
      }
      this.finished = true;
      const total = [...this.loaded.values()].reduce((a, b) => a + b, 0);
      this.ctx.log.info(`${this.name}: restored ${total} keys`);
    } finally {
      if (this.finished) {
        conn.close();
        this.conn = null;
      }
    }
  }

  /** Empties the spares this restore filled; the target dbs were never touched. */
  async abort(): Promise<void> {
    if (this.finished) return;
    let conn = this.conn;
    this.conn = null;
    if (!conn) return;
    try {
      if (this.spares.size > 0) {
        // The staging connection may be the thing that broke: empty the spares over a fresh one.
        if (conn.error) {
          conn.close();
          conn = await RespConnection.connect(this.target, { db: null });
        }
        for (const spare of this.spares.values()) {
          await conn.command(['SELECT', spare]);
          await conn.command(['FLUSHDB', 'ASYNC']);
        }
      }
    } catch (err) {
      this.ctx.log.error(`${this.name}: could not empty spare db ${[...this.spares.values()].join(', ')}: ${(err as Error).message}`);
    } finally {
      conn.close();
    }
  }
}
