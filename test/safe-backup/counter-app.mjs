// The safe-backup test application: every POST /hit increments a counter in PostgreSQL, Redis and
// SQLite and appends a line to a file on a mount, one request at a time, and answers with all four
// values. Between requests the four counters are equal, so a backup taken while no request is half
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
const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
const sqlite = new Database(SQLITE_PATH);
sqlite.pragma('journal_mode = WAL');
sqlite.pragma('busy_timeout = 10000');
const sqliteIncrement = sqlite.prepare('UPDATE counter SET n = n + 1 RETURNING n');
const logFile = join(MOUNT_DIR, 'hits.log');
let lines = existsSync(logFile) ? readFileSync(logFile, 'utf8').split('\n').filter(Boolean).length : 0;

async function hit() {
  const pgValue = (await pgClient.query('UPDATE counter SET n = n + 1 RETURNING n')).rows[0].n;
  const redisValue = await redis.incr('counter');
  const sqliteValue = sqliteIncrement.get().n;
  appendFileSync(logFile, `${pgValue}\n`);
  lines++;
  return { pg: Number(pgValue), redis: Number(redisValue), sqlite: Number(sqliteValue), file: lines };
}

// One hit at a time: the four increments of a request never interleave with another request's.
let queue = Promise.resolve();
const serialized = (fn) => {
  const result = queue.then(fn);
  queue = result.catch(() => {});
  return result;
};

const server = http.createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://app');
  if (req.method === 'POST' && url.pathname === '/hit') {
    serialized(hit).then(
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
