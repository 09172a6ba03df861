import { EventEmitter } from 'node:events';
import type { Connection as CbConnection } from 'mysql2';
import { describe, expect, it } from 'vitest';
import { readResultSet, ServerError } from './result-reader.js';

/** Protocol packets: 3-byte length, sequence id, payload; payloads of 16 MiB - 1 and more are split. */
function packets(payloads: Buffer[]): Buffer {
  const out: Buffer[] = [];
  let seq = 1;
  for (const p of payloads) {
    let at = 0;
    for (;;) {
      const n = Math.min(0xffffff, p.length - at);
      const header = Buffer.alloc(4);
      header.writeUIntLE(n, 0, 3);
      header[3] = seq++ & 0xff;
      out.push(header, p.subarray(at, at + n));
      at += n;
      if (n < 0xffffff) break;
    }
  }
  return Buffer.concat(out);
}

const lenenc = (n: number): Buffer =>
  n < 0xfb ? Buffer.from([n]) : n < 0x10000 ? Buffer.from([0xfc, n & 0xff, n >> 8]) : Buffer.from([0xfd, n & 0xff, (n >> 8) & 0xff, n >> 16]);
const textRow = (values: (string | Buffer | null)[]): Buffer =>
  Buffer.concat(values.map((v) => (v === null ? Buffer.from([0xfb]) : Buffer.concat([v.length >= 0x1000000 ? Buffer.concat([Buffer.from([0xfe]), u64(v.length)]) : lenenc(v.length), Buffer.from(v)]))));
const u64 = (n: number): Buffer => {
  const b = Buffer.alloc(8);
  b.writeUInt32LE(n >>> 0, 0);
  b.writeUInt32LE(Math.floor(n / 0x1_0000_0000), 4);
  return b;
};
const EOF = Buffer.from([0xfe, 0, 0, 0x22, 0]);
const ERR = (errno: number, state: string, message: string) => Buffer.concat([Buffer.from([0xff, errno & 0xff, errno >> 8]), Buffer.from('#' + state + message)]);

/** A reply to a SELECT of `columns` columns. */
function reply(columns: number, rows: Buffer[], tail: Buffer = EOF): Buffer {
  const defs = Array.from({ length: columns }, (_, i) => Buffer.from(`\x03def\x00\x01t\x01t\x02c${i}\x02c${i}\x0c\x3f\x00\x00\x01\x00\x00\xfc\x00\x00\x00\x00`, 'latin1'));
  return packets([lenenc(columns), ...defs, EOF, ...rows, tail]);
}

/** A mysql2 connection stand-in: an idle connection whose socket is an emitter. */
function fakeConnection() {
  const stream = Object.assign(new EventEmitter(), {
    destroyed: false,
    written: [] as Buffer[],
    write(b: Buffer) {
      this.written.push(Buffer.from(b));
      return true;
    },
    pause() {},
    resume() {},
    destroy() {
      this.destroyed = true;
    },
  });
  const mysqlSaw: Buffer[] = [];
  stream.on('data', (b: Buffer) => mysqlSaw.push(b));
  const raw = Object.assign(new EventEmitter(), { stream, config: {}, _command: null });
  return { raw: raw as unknown as CbConnection, stream, mysqlSaw };
}

/** Runs a read over `data` cut into chunks of `size` bytes (each chunk overwritten after its call, as the row socket does). */
async function read(data: Buffer, columns: number, size: number) {
  const { raw, stream, mysqlSaw } = fakeConnection();
  const rows: Buffer[] = [];
  const r = readResultSet(raw, 'SELECT 1', columns, (d, s, e) => rows.push(Buffer.from(d.subarray(s, e))));
  const scratch = Buffer.alloc(size);
  for (let at = 0; at < data.length; at += size) {
    const n = data.copy(scratch, 0, at, at + size);
    stream.emit('data', scratch.subarray(0, n));
    scratch.fill(0xaa);
  }
  // Every byte was delivered: the read has settled by now, or never will.
  const err = await Promise.race([
    r.done.then(
      () => null,
      (e: unknown) => e,
    ),
    new Promise((resolve) => setImmediate(() => resolve(new Error('the read did not settle')))),
  ]);
  return { rows, err, stream, mysqlSaw };
}

describe('readResultSet', () => {
  const rows = [textRow(['1', 'abc', null]), textRow(['22', '', 'x\ty']), textRow(['3', Buffer.alloc(300, 0x41), Buffer.alloc(70000, 0x42)])];

  it('sends one COM_QUERY packet', async () => {
    const { stream } = await read(reply(3, rows), 3, 1 << 20);
    expect(stream.written).toEqual([Buffer.concat([Buffer.from([9, 0, 0, 0, 3]), Buffer.from('SELECT 1')])]);
  });

  it('delivers every row payload whatever the chunk boundaries, and hands the socket back to mysql2', async () => {
    const data = reply(3, rows);
    for (const size of [1, 2, 3, 4, 5, 7, 64, 1000, 4096, 65536, data.length]) {
      const { rows: got, err, stream, mysqlSaw } = await read(data, 3, size);
      expect(err).toBeNull();
      expect(got).toEqual(rows);
      expect(stream.listenerCount('close')).toBe(0);
      // mysql2's own listener is back: the next chunk reaches it.
      stream.emit('data', Buffer.from('next'));
      expect(mysqlSaw.map(String)).toEqual(['next']);
    }
  });

  it('joins a row split over packets at 16 MiB', async () => {
    const big = textRow(['7', Buffer.alloc(0xffffff + 10, 0x43)]);
    expect(big.length).toBeGreaterThan(0xffffff);
    const exact = textRow(['8', Buffer.alloc(0xffffff - 6, 0x44)]); // payload exactly 16 MiB - 1: an empty packet follows
    expect(exact.length).toBe(0xffffff);
    const { rows: got, err } = await read(reply(2, [textRow(['1', 'a']), big, exact, textRow(['2', 'b'])]), 2, 100_000);
    expect(err).toBeNull();
    expect(got.map((r) => r.length)).toEqual([4, big.length, exact.length, 4]);
    expect(got[1]!.equals(big)).toBe(true);
    expect(got[2]!.equals(exact)).toBe(true);
  });

  it('fails with the server error (code, errno, message) mid-rows and before the result set, and drops the socket', async () => {
    const mid = await read(reply(3, rows, ERR(1412, 'HY000', 'Table definition has changed, please retry transaction')), 3, 50);
    expect(mid.rows).toEqual(rows);
    expect(mid.err).toBeInstanceOf(ServerError);
    expect(mid.err).toMatchObject({ code: 'ER_TABLE_DEF_CHANGED', errno: 1412, sqlState: 'HY000', message: 'Table definition has changed, please retry transaction' });
    expect(mid.stream.destroyed).toBe(true);
    expect(mid.mysqlSaw).toEqual([]);
    const first = await read(packets([ERR(1146, '42S02', "Table 'x.t' doesn't exist")]), 3, 7);
    expect(first.err).toMatchObject({ code: 'ER_NO_SUCH_TABLE', errno: 1146 });
  });

  it('fails on a result set of another width, and when the connection closes mid-rows', async () => {
    const wrong = await read(reply(2, [textRow(['1', 'a'])]), 3, 1000);
    expect(String(wrong.err)).toMatch(/expected a result set of 3 columns/);
    const { raw, stream } = fakeConnection();
    const r = readResultSet(raw, 'SELECT 1', 3, () => {});
    stream.emit('data', reply(3, rows).subarray(0, 200));
    stream.emit('close');
    await expect(r.done).rejects.toMatchObject({ code: 'PROTOCOL_CONNECTION_LOST' });
  });
});
