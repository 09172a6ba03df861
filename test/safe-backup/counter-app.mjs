// The safe-backup test application: every POST /hit increments a counter in PostgreSQL, Redis and
// SQLite and appends a line to a file on a mount, and answers with all four values. Requests are
// applied in batches, one batch at a time. Between requests the four counters are equal, so a backup taken while no request is half
// done restores four equal counters. GET /slow?ms=N answers late (a long in-flight request).
// Configured by environment: PORT, PG_URL, REDIS_URL, SQLITE_PATH, MOUNT_DIR. Prints "listening PORT".
import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import Redis from 'ioredis';
import pg from 'pg';

const { PORT = '0', PG_URL, REDIS_URL, SQLITE_PATH, MOUNT_DIR } = process.env;
const pgClient = new pg.Client({ connectionString: PG_URL });
await pgClient.connect();
// The test measures holds, not disk flushes: commits need not wait for fsync (durability is not tested).
await pgClient.query('SET synchronous_commit = off');
const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
const sqlite = new Database(SQLITE_PATH);
sqlite.pragma('journal_mode = WAL');
sqlite.pragma('synchronous = NORMAL');
sqlite.pragma('busy_timeout = 10000');
const sqliteIncrement = sqlite.prepare('UPDATE counter SET n = n + ? RETURNING n');
const logFile = join(MOUNT_DIR, 'hits.log');
let lines = existsSync(logFile) ? readFileSync(logFile, 'utf8').split('\n').filter(Boolean).length : 0;

/**
 * Applies `k` hits at once: each store is incremented by k, then the k requests get consecutive values.
 * Batches run one after another, so between batches the four counters are equal; a request's four
 * values come from the four stores independently, so any store that missed or repeated an increment
 * shows up as disagreeing values.
 */
async function applyBatch(k) {
  const pgTop = Number((await pgClient.query('UPDATE counter SET n = n + $1 RETURNING n', [k])).rows[0].n);
  const redisTop = Number(await redis.incrby('counter', k));
  const sqliteTop = Number(sqliteIncrement.get(k).n);
  const first = lines + 1;
  let text = '';
  for (let i = 0; i < k; i++) text += `${pgTop - k + 1 + i}\n`;
  appendFileSync(logFile, text);
  lines += k;
  return Array.from({ length: k }, (_, i) => ({
    pg: pgTop - k + 1 + i,
    redis: redisTop - k + 1 + i,
    sqlite: sqliteTop - k + 1 + i,
    file: first + i,
  }));
}

// Hits wait here while a batch runs; the next batch takes all of them (keeps up on a busy machine).
let waiting = [];
let running = false;
async function drainBatches() {
  running = true;
  while (waiting.length) {
    const batch = waiting;
    waiting = [];
    try {
      const values = await applyBatch(batch.length);
      batch.forEach((b, i) => b.resolve(values[i]));
    } catch (err) {
      for (const b of batch) b.reject(err);
    }
  }
  running = false;
}
const hit = () =>
  new Promise((resolve, reject) => {
    waiting.push({ resolve, reject });
    if (!running) void drainBatches();
  });

const server = http.createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://app');
  if (req.method === 'POST' && url.pathname === '/hit') {
    hit().then(
      (values) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(values)),
      (err) => res.writeHead(500).end(String(err?.message ?? err)),
    );
    return;
  }
  if (url.pathname === '/slow') {
    setTimeout(() => res.end('slow done'), Number(url.searchParams.get('ms') ?? 1000));
    return;
  }
  if (url.pathname === '/health') return void res.end('ok');
  res.writeHead(404).end('not found');
});
server.keepAliveTimeout = 65_000;
server.listen(Number(PORT), '127.0.0.1', () => process.stdout.write(`listening ${server.address().port}\n`));
