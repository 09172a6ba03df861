import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isBunkerError } from '../../core/errors.js';
import { Crc64 } from './crc64.js';
import { lzfDecompress, RdbParser, restorePayload, type RdbEvent } from './rdb.js';

/** Builds RDB files by hand, so the reader can be checked on what it must accept and refuse. */
function str(s: string | Buffer): Buffer {
  const b = Buffer.isBuffer(s) ? s : Buffer.from(s);
  if (b.length >= 64) throw new Error('test strings stay short');
  return Buffer.concat([Buffer.from([b.length]), b]);
}
function rdb(body: Buffer[], options: { version?: string; checksum?: 'right' | 'zero' | 'wrong' } = {}): Buffer {
  const head = Buffer.from(`REDIS${options.version ?? '0010'}`);
  const content = Buffer.concat([head, ...body, Buffer.from([0xff])]);
  const crc = new Crc64().update(content).toBufferLE();
  if (options.checksum === 'zero') crc.fill(0);
  if (options.checksum === 'wrong') crc[0] = crc[0]! ^ 1;
  return Buffer.concat([content, crc]);
}
function expireMs(ms: number): Buffer {
  const b = Buffer.alloc(9);
  b[0] = 0xfc;
  b.writeBigInt64LE(BigInt(ms), 1);
  return b;
}
const LZF_KEY = Buffer.from([0xc3, 6, 9, 2, 0x61, 0x62, 0x63, 0x80, 2]); // "abcabcabc", LZF-compressed

const sample = rdb([
  Buffer.concat([Buffer.from([0xfa]), str('redis-ver'), str('7.0.15')]),
  Buffer.from([0xfe, 0x00, 0xfb, 0x03, 0x01]),
  Buffer.concat([Buffer.from([0x00]), str('greeting'), str('hello world')]),
  Buffer.concat([expireMs(1_900_000_000_123), Buffer.from([0x00]), LZF_KEY, Buffer.from([0xc0, 0x7f])]),
  Buffer.concat([Buffer.from([0xfe, 0x05, 0xf9, 0x03, 0x0e]), str('list'), Buffer.from([0x01]), str('zl-bytes')]),
]);

function parseAll(data: Buffer, cuts: number[] = []): RdbEvent[] {
  const p = new RdbParser('test');
  const events: RdbEvent[] = [];
  let prev = 0;
  for (const c of [...cuts, data.length]) {
    events.push(...p.push(data.subarray(prev, c)));
    prev = c;
  }
  p.finish();
  return events;
}

const summary = (events: RdbEvent[]) =>
  events.map((e) =>
    e.kind === 'key'
      ? `key db${e.db} ${e.key.toString()} exp=${e.expireMs} type=${e.type} ${e.type.toString(16).padStart(2, '0')}${e.raw.subarray(e.valueStart).toString('hex')}`
      : e.kind,
  );

describe('RdbParser', () => {
  it('reads header, aux fields, db selectors, expiries, LZF and integer encodings', () => {
    const events = parseAll(sample);
    expect(summary(events)).toEqual([
      'header',
      'aux',
      'selectdb',
      'resizedb',
      `key db0 greeting exp=null type=0 00${str('hello world').toString('hex')}`,
      'key db0 abcabcabc exp=1900000000123 type=0 00c07f',
      'selectdb',
      `key db5 list exp=null type=14 0e01${str('zl-bytes').toString('hex')}`,
      'eof',
    ]);
    const eof = events.at(-1)!;
    expect(eof.kind === 'eof' && eof.checksumVerified).toBe(true);
  });

  it('gives the same events however the stream is chunked', () => {
    const expected = summary(parseAll(sample));
    fc.assert(
      fc.property(fc.array(fc.nat(sample.length), { maxLength: 12 }), (cuts) => {
        const points = [...new Set(cuts)].sort((a, b) => a - b);
        expect(summary(parseAll(sample, points))).toEqual(expected);
      }),
    );
  });

  it('in count-only mode counts keys per db instead of returning them, and still names module keys', () => {
    const p = new RdbParser('test', true);
    const kinds = p.push(sample).map((e) => e.kind);
    p.finish();
    expect(kinds).not.toContain('key');
    expect(Object.fromEntries(p.keysPerDb)).toEqual({ 0: 2, 5: 1 });
    const mod = rdb([Buffer.concat([Buffer.from([0x07]), str('bloom:users'), Buffer.from([0x01, 0x00])])]);
    expect(() => new RdbParser('test', true).push(mod)).toThrow(/"bloom:users" holds a module type/);
  });

  it('walk() reads nothing past `to`, and its fast count-only path agrees with the full parse', () => {
    // Many keys of the kinds the fast path takes (strings in every encoding, with expiry, LRU and LFU
    // opcodes, listpacks), and kinds it leaves to the general path (a list of strings).
    const entries: Buffer[] = [Buffer.from([0xfe, 0x00, 0xfb, 0x40, 0x10, 0x00])];
    for (let i = 0; i < 300; i++) {
      const key = str(`k${i}`);
      switch (i % 6) {
        case 0:
          entries.push(Buffer.concat([Buffer.from([0x00]), key, str('v'.repeat(i % 50))]));
          break;
        case 1:
          entries.push(Buffer.concat([expireMs(1_900_000_000_000 + i), Buffer.from([0x00]), key, Buffer.from([0xc1, i & 0xff, 0])]));
          break;
        case 2:
          entries.push(Buffer.concat([Buffer.from([0xf8, 0x05, 0x00]), LZF_KEY, Buffer.from([0xc2, 1, 2, 3, 4])]));
          break;
        case 3:
          entries.push(Buffer.concat([Buffer.from([0xf9, 0x07, 0x10]), key, str('listpack-bytes')]));
          break;
        case 4:
          entries.push(Buffer.concat([Buffer.from([0x00]), key, Buffer.from([0x40, 70]), Buffer.alloc(70, i)]));
          break;
        default:
          entries.push(Buffer.concat([Buffer.from([0x01]), key, Buffer.from([0x02]), str('a'), str('b')]));
      }
    }
    entries.push(Buffer.from([0xfe, 0x03]), Buffer.concat([Buffer.from([0x00]), str('in3'), str('x')]));
    const file = rdb(entries);
    const full = parseAll(file).filter((e) => e.kind === 'key');
    const expected: Record<number, number> = {};
    for (const e of full) if (e.kind === 'key') expected[e.db] = (expected[e.db] ?? 0) + 1;
    expect(expected).toEqual({ 0: 300, 3: 1 });

    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 400 }), { minLength: 1, maxLength: 40 }), (steps) => {
        // The file sits in a larger buffer whose bytes past what has "arrived" are garbage.
        const block = Buffer.alloc(file.length + 64, 0xc3);
        const p = new RdbParser('test', true);
        const events: RdbEvent[] = [];
        let arrived = 0;
        let pos = 0;
        for (let i = 0; !p.done; i++) {
          const n = Math.min(file.length - arrived, steps[i % steps.length]!);
          file.copy(block, arrived, arrived, arrived + n);
          arrived += n;
          if (arrived - pos >= p.needed) pos = p.walk(block, pos, arrived, events);
          if (arrived === file.length && !p.done) throw new Error(`stuck at ${pos} of ${file.length}, needed ${p.needed}, byte ${file[pos]}`);
        }
        expect(pos).toBe(file.length);
        expect(p.position).toBe(file.length);
        expect(Object.fromEntries(p.keysPerDb)).toEqual(expected);
        expect(events.map((e) => e.kind)).toEqual(['header', 'selectdb', 'resizedb', 'selectdb', 'eof']);
        // selectdb 3 (2 bytes) and its key (7 bytes) come before the EOF opcode and checksum (9 bytes).
        expect(events.map((e) => e.at)).toEqual([0, 9, 11, file.length - 9 - 7 - 2, file.length - 9]);
      }),
      { numRuns: 300 },
    );
  });

  it('walk() asks for no more bytes than the entry it stopped in needs', () => {
    // A 105-byte entry arrives in two parts, the second ending exactly after the next entry: the bytes
    // it asked for the first time must not hold back the short rest of the file.
    const long = Buffer.concat([Buffer.from([0x00]), str('a'), Buffer.from([0x40, 100]), Buffer.alloc(100, 7)]);
    const short = Buffer.concat([Buffer.from([0x00]), str('b'), str('c')]);
    const file = rdb([Buffer.from([0xfe, 0x00]), long, short]);
    const longAt = 9 + 2;
    const p = new RdbParser('test', true);
    const events: RdbEvent[] = [];
    let pos = 0;
    for (const to of [longAt + 50, longAt + long.length + short.length, file.length]) {
      if (to - pos >= p.needed) pos = p.walk(file, pos, to, events);
    }
    expect(p.done).toBe(true);
    expect(Object.fromEntries(p.keysPerDb)).toEqual({ 0: 2 });
  });

  it('keeps the bytes after the trailer (the replication end mark) apart', () => {
    const p = new RdbParser('test');
    p.push(Buffer.concat([sample, Buffer.from('MARK')]));
    expect(p.done).toBe(true);
    expect(p.trailing.toString()).toBe('MARK');
  });

  it('refuses a wrong checksum and accepts a disabled (zero) one', () => {
    const wrong = rdb([Buffer.concat([Buffer.from([0x00]), str('k'), str('v')])], { checksum: 'wrong' });
    expect(() => parseAll(wrong)).toThrow(/checksum does not match/);
    const zero = rdb([Buffer.concat([Buffer.from([0x00]), str('k'), str('v')])], { checksum: 'zero' });
    const eof = parseAll(zero).at(-1)!;
    expect(eof.kind === 'eof' && !eof.checksumVerified).toBe(true);
  });

  it('refuses truncation at every point before the end', () => {
    for (let n = 0; n < sample.length; n++) {
      expect(() => parseAll(sample.subarray(0, n)), `cut at ${n}`).toThrow(/truncated|corrupt/);
    }
  });

  it('names the key of a module type', () => {
    const mod = rdb([Buffer.concat([Buffer.from([0x07]), str('bloom:users'), Buffer.from([0x01, 0x00])])]);
    try {
      parseAll(mod);
      expect.unreachable();
    } catch (err) {
      expect(isBunkerError(err, 'engine')).toBe(true);
      expect((err as Error).message).toContain('"bloom:users"');
      expect((err as Error).message).toContain('module type');
    }
  });

  it('refuses RDB versions it does not know and unknown value types', () => {
    expect(() => parseAll(rdb([], { version: '0012' }))).toThrow(/RDB version 12 is not supported/);
    expect(() => parseAll(rdb([Buffer.concat([Buffer.from([0x40]), str('k'), str('v')])]))).toThrow(/unknown value type 64/);
  });
});

describe('lzfDecompress', () => {
  it('expands literals and overlapping back-references, and refuses bad input', () => {
    expect(lzfDecompress(Buffer.from([2, 0x61, 0x62, 0x63, 0x80, 2]), 9)?.toString()).toBe('abcabcabc');
    expect(lzfDecompress(Buffer.from([2, 0x61, 0x62, 0x63, 0x80, 9]), 9)).toBe(null); // reference before the start
    expect(lzfDecompress(Buffer.from([2, 0x61, 0x62]), 3)).toBe(null); // literal runs past the input
  });
});

describe('restorePayload', () => {
  // Known answers: what DUMP returned on Redis 7.0.15 (RDB version 10) for the same values.
  it('builds the payload Redis DUMP produces for a string and a quicklist', () => {
    const dumpString = Buffer.from('000b68656c6c6f20776f726c640a000bfc49b9a6c7a034', 'hex');
    expect(restorePayload(dumpString.subarray(0, -10), 10)).toEqual(dumpString);
    const dumpList = Buffer.from('12010210100000000300816102816202816302ff0a00c818b90c9533529e', 'hex');
    expect(restorePayload(dumpList.subarray(0, -10), 10)).toEqual(dumpList);
  });
});
