import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { RowEncoder } from './row-format.js';
import { withAutoIncrement } from './schema.js';

/** Reads the format back the way LOAD DATA does (ESCAPED BY '\\', fields by tab, lines by newline). */
function decode(data: Buffer): (Buffer | null)[][] {
  const rows: (Buffer | null)[][] = [];
  let row: (Buffer | null)[] = [];
  let field: number[] = [];
  let isNull = false;
  for (let i = 0; i < data.length; i++) {
    const b = data[i]!;
    if (b === 0x5c) {
      const n = data[++i]!;
      if (n === 0x4e) isNull = true;
      else field.push(n === 0x74 ? 0x09 : n === 0x6e ? 0x0a : n);
    } else if (b === 0x09 || b === 0x0a) {
      row.push(isNull ? null : Buffer.from(field));
      field = [];
      isNull = false;
      if (b === 0x0a) {
        rows.push(row);
        row = [];
      }
    } else field.push(b);
  }
  return rows;
}

describe('RowEncoder', () => {
  it('round-trips any bytes, NULLs and empty values through the LOAD DATA escaping', () => {
    const value = fc.oneof(fc.constant(null), fc.uint8Array({ maxLength: 40 }).map((a) => Buffer.from(a)), fc.constantFrom(Buffer.from('\\N'), Buffer.from('\t\n\\')));
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 5 }).chain((n) => fc.array(fc.array(value, { minLength: n, maxLength: n }), { maxLength: 20 })), (rows) => {
        const enc = new RowEncoder(64);
        const parts: Buffer[] = [];
        for (const r of rows) {
          const block = enc.push(r);
          if (block) parts.push(block);
        }
        parts.push(enc.take());
        expect(enc.rows).toBe(rows.length);
        expect(decode(Buffer.concat(parts))).toEqual(rows);
      }),
    );
  });

  it('gives the same bytes from result row packets (length-encoded values) as from values', () => {
    // Lengths of 9, 10 and 92 put a tab, newline or backslash byte in the packet outside any value;
    // 251+ bytes take a 3-byte length (0xfc), 65536+ a 4-byte one (0xfd).
    const value = fc.oneof(
      fc.constant(null),
      fc.uint8Array({ maxLength: 100 }).map((a) => Buffer.from(a)),
      fc.constantFrom(9, 10, 92, 250, 251, 300).map((n) => Buffer.alloc(n, 0x61)),
      fc.constant(70_000).map((n) => Buffer.alloc(n, 0x09)),
      fc.constantFrom(Buffer.from('\\N'), Buffer.from('\t\n\\'), Buffer.from('2024-01-02')),
    );
    const lenenc = (v: Buffer | null): Buffer => {
      if (v === null) return Buffer.from([0xfb]);
      const n = v.length;
      const head = n < 251 ? [n] : n < 65536 ? [0xfc, n & 255, n >> 8] : [0xfd, n & 255, (n >> 8) & 255, n >> 16];
      return Buffer.concat([Buffer.from(head), v]);
    };
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 5 }).chain((n) => fc.array(fc.array(value, { minLength: n, maxLength: n }), { maxLength: 20 })), fc.boolean(), (rows, shared) => {
        const byValues = new RowEncoder(64);
        const byPackets = new RowEncoder(64);
        const a: Buffer[] = [];
        const b: Buffer[] = [];
        // Packets back to back in one buffer with 4-byte headers between them, as they arrive in a
        // network chunk (the encoder remembers where the special bytes are in it), or each apart.
        const payloads = rows.map((r) => Buffer.concat(r.map(lenenc)));
        const chunk = Buffer.concat(payloads.flatMap((p) => [Buffer.from([0x0a, 0x09, 0x5c, 0]), p]));
        let at = 0;
        rows.forEach((r, i) => {
          const p = payloads[i]!;
          at += 4;
          const x = byValues.push(r);
          const y = shared ? byPackets.pushPacket(chunk, at, at + p.length) : byPackets.pushPacket(Buffer.from(p), 0, p.length);
          at += p.length;
          if (x) a.push(x);
          if (y) b.push(y);
        });
        a.push(byValues.take());
        b.push(byPackets.take());
        expect(byPackets.rows).toBe(rows.length);
        expect(Buffer.concat(b).equals(Buffer.concat(a))).toBe(true);
      }),
      { numRuns: 200 },
    );
  });

  it('cuts blocks before a row could overrun them, in buffers no larger than a block unless one row needs more', () => {
    const enc = new RowEncoder(64 * 1024);
    const row = (n: number) => Buffer.concat([Buffer.from([0xfc, n & 255, n >> 8]), Buffer.alloc(n, 0x61), Buffer.from([1, 0x32])]);
    const blocks: Buffer[] = [];
    for (let i = 0; i < 2000; i++) {
      const p = row(i === 1000 ? 40_000 : 180);
      const block = enc.pushPacket(p, 0, p.length);
      if (block) blocks.push(block);
    }
    blocks.push(enc.take());
    expect(blocks.length).toBeGreaterThan(4);
    // Every block fills its own buffer of the block size (up to the room a 180-byte row might need),
    // except the one the long row needed a buffer of its own for.
    const own = blocks.filter((b) => b.buffer.byteLength !== 64 * 1024);
    expect(own.map((b) => b.buffer.byteLength)).toEqual([3 * 40_005 + 1]);
    const rest = blocks.slice(0, -1).filter((b) => !own.includes(b));
    for (const b of rest) expect(b.length).toBeLessThanOrEqual(64 * 1024);
    // Only the block before the long row was cut short (the row did not fit in its room).
    expect(rest.filter((b) => b.length <= 64 * 1024 - 3 * 188).length).toBe(1);
    expect(Buffer.concat(blocks).toString('latin1').split('\n').length).toBe(2001);
  });

  it('refuses a row packet whose value runs past its end', () => {
    const enc = new RowEncoder();
    expect(() => enc.pushPacket(Buffer.from([5, 0x61, 0x62]), 0, 3)).toThrow(/runs past the packet's end/);
  });

  it('writes NULL as \\N and the two characters \\N as \\\\N', () => {
    const enc = new RowEncoder();
    enc.push([null, Buffer.from('\\N'), Buffer.from('')]);
    expect(enc.take().toString('latin1')).toBe('\\N\t\\\\N\t\n');
  });
});

describe('withAutoIncrement', () => {
  const create = 'CREATE TABLE `t` (\n  `id` int(11) NOT NULL AUTO_INCREMENT,\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB AUTO_INCREMENT=17 DEFAULT CHARSET=utf8mb4\n PARTITION BY HASH (`id`)\n(PARTITION `p0` ENGINE = InnoDB)';
  it('sets the pin-time value on the table options line only', () => {
    expect(withAutoIncrement(create, '42')).toBe(create.replace('AUTO_INCREMENT=17', 'AUTO_INCREMENT=42'));
  });
  it('removes it when the table had no counter', () => {
    expect(withAutoIncrement(create, null)).toBe(create.replace(' AUTO_INCREMENT=17', ''));
  });
  it('adds it when the definition lacked one', () => {
    const bare = create.replace(' AUTO_INCREMENT=17', '');
    expect(withAutoIncrement(bare, '5')).toBe(create.replace('AUTO_INCREMENT=17', 'AUTO_INCREMENT=5'));
  });
});
