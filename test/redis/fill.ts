// Puts one key of every type and encoding the issue lists into a db (Redis 7.0 encodings noted).
import type { Redis } from 'ioredis';
import { bytes } from './helpers.js';

export async function fillEveryType(r: Redis): Promise<void> {
  const future = Date.now() + 3_600_000;
  const p = r.pipeline();
  // strings: embstr, int, empty, binary key and value, 10 MB raw, an LZF-compressible key
  p.set('str:small', 'hello');
  p.set('str:int', '1234567');
  p.set('str:neg', '-42');
  p.set('str:empty', '');
  p.set(Buffer.from([0, 255, 10, 13, 32]), bytes(300, 1));
  p.set('str:big', bytes(10 * 1024 * 1024, 2));
  p.set('k'.repeat(200), 'v'.repeat(500));
  p.setbit('bitmap', 100_000, 1);
  p.setbit('bitmap', 7, 1);
  p.pfadd('hll:sparse', 'a', 'b', 'c');
  p.pfadd('hll:dense', ...Array.from({ length: 5000 }, (_, i) => `m${i}`));
  // lists: listpack (small) and quicklist (large, with big elements)
  p.rpush('list:small', 'a', 'b', '3', '');
  p.rpush('list:large', ...Array.from({ length: 20_000 }, (_, i) => (i % 1000 === 0 ? 'x'.repeat(10_000) : `item-${i}`)));
  // sets: intset, listpack/hashtable of strings
  p.sadd('set:ints', 1, 2, 3, -5, 1_000_000_000_000);
  p.sadd('set:small', 'a', 'b', 'c');
  p.sadd('set:large', ...Array.from({ length: 5000 }, (_, i) => `member-${i}`));
  // sorted sets: listpack and skiplist, with ±inf
  p.zadd('zset:small', 1.5, 'a', '-inf', 'low', '+inf', 'high');
  p.zadd('zset:large', ...Array.from({ length: 3000 }, (_, i) => [i * 0.25, `z${i}`]).flat(), '+inf', 'top', '-inf', 'bottom');
  // hashes: listpack and hashtable
  p.hset('hash:small', 'f1', 'v1', 'f2', '2');
  p.hset('hash:large', ...Array.from({ length: 2000 }, (_, i) => [`field${i}`, `value${i}`]).flat(), 'long', 'L'.repeat(5000));
  p.geoadd('geo', 13.361389, 38.115556, 'Palermo', 15.087269, 37.502669, 'Catania');
  // keys with expiry
  p.set('ttl:str', 'soon');
  p.pexpireat('ttl:str', future);
  p.hset('ttl:hash', 'a', '1');
  p.pexpireat('ttl:hash', future + 12_345);
  await p.exec();

  // streams: deleted entries, two consumer groups with pending entries, and empty streams
  for (let i = 0; i < 50; i++) await r.xadd('stream', '*', 'n', String(i), 'payload', 'p'.repeat(i));
  const ids = ((await r.xrange('stream', '-', '+')) as [string, string[]][]).map(([id]) => id);
  await r.xdel('stream', ids[3]!, ids[10]!, ids[49]!);
  await r.xgroup('CREATE', 'stream', 'g1', '0');
  await r.xgroup('CREATE', 'stream', 'g2', ids[20]!);
  await r.xreadgroup('GROUP', 'g1', 'alice', 'COUNT', 5, 'STREAMS', 'stream', '>');
  await r.xreadgroup('GROUP', 'g1', 'bob', 'COUNT', 3, 'STREAMS', 'stream', '>');
  await r.xreadgroup('GROUP', 'g2', 'carol', 'COUNT', 4, 'STREAMS', 'stream', '>');
  await r.xack('stream', 'g1', ids[0]!);
  await r.xgroup('CREATE', 'stream:empty-group', 'g', '$', 'MKSTREAM');
  await r.xadd('stream:trimmed', '*', 'a', '1');
  await r.xtrim('stream:trimmed', 'MAXLEN', 0);
}

/** The encodings fillEveryType must have produced, so a change in server defaults cannot hollow out the test. */
export const EXPECTED_ENCODINGS: Record<string, string[]> = {
  'str:int': ['int'],
  'str:big': ['raw'],
  'list:small': ['listpack', 'quicklist'],
  'list:large': ['quicklist'],
  'set:ints': ['intset'],
  'set:small': ['listpack', 'hashtable'],
  'set:large': ['hashtable'],
  'zset:small': ['listpack', 'ziplist'],
  'zset:large': ['skiplist'],
  'hash:small': ['listpack', 'ziplist'],
  'hash:large': ['hashtable'],
  stream: ['stream'],
};
