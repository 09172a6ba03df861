// A production and a staging environment of the counter app on the real servers: PostgreSQL databases
// with unique names, Redis db 10 (production) and 11 (staging), SQLite files and mount folders in a
// temp dir, a bunker.yaml naming them all, the app running behind the gateway, and a load generator.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import Database from 'better-sqlite3';
import { Redis } from 'ioredis';
import pg from 'pg';
import { transpileGateway } from '../gateway/helpers/compile.js';

export const PG = 'postgresql://postgres@127.0.0.1:5432';
export const REDIS = 'redis://127.0.0.1:6379';
const APP = new URL('./counter-app.mjs', import.meta.url).pathname;

export async function pgQuery(db: string, text: string, values: unknown[] = []): Promise<pg.QueryResult> {
  const c = new pg.Client({ connectionString: `${PG}/${db}` });
  await c.connect();
  try {
    return await c.query(text, values);
  } finally {
    await c.end();
  }
}

export async function redisCall<T>(db: number, fn: (r: Redis) => Promise<T>): Promise<T> {
  const r = new Redis(`${REDIS}/${db}`, { maxRetriesPerRequest: 1 });
  try {
    return await fn(r);
  } finally {
    r.disconnect();
  }
}

// Redis db 10 and 11 are this suite's alone, but two test files (or two runs) would share them: a lock
// directory serializes every user of the fixture across processes; a dead holder's lock is taken over.
const REDIS_LOCK = join(tmpdir(), 'bunker-test-redis-10-11.lock');

async function lockRedisDbs(): Promise<void> {
  for (;;) {
    try {
      mkdirSync(REDIS_LOCK);
      writeFileSync(join(REDIS_LOCK, 'pid'), String(process.pid));
      return;
    } catch {
      let holder = NaN;
      try {
        holder = Number(readFileSync(join(REDIS_LOCK, 'pid'), 'utf8'));
      } catch {
        /* being created or removed */
      }
      let alive = true;
      if (Number.isInteger(holder) && holder > 0) {
        try {
          process.kill(holder, 0);
        } catch {
          alive = false;
        }
      }
      if (!alive) rmSync(REDIS_LOCK, { recursive: true, force: true });
      else await new Promise((r) => setTimeout(r, 200));
    }
  }
}

function unlockRedisDbs(): void {
  try {
    if (readFileSync(join(REDIS_LOCK, 'pid'), 'utf8') === String(process.pid)) rmSync(REDIS_LOCK, { recursive: true, force: true });
  } catch {
    /* not ours */
  }
}

export interface Counters {
  pg: number | null;
  redis: number | null;
  sqlite: number | null;
  file: number | null;
}

export interface EnvPaths {
  pgDb: string;
  redisDb: number;
  sqlite: string;
  mount: string;
}

export class CounterProject {
  readonly dir = mkdtempSync(join(tmpdir(), 'bunker-safe-'));
  readonly id = randomBytes(4).toString('hex');
  readonly production: EnvPaths;
  readonly staging: EnvPaths;
  readonly configPath = join(this.dir, 'bunker.yaml');
  readonly stateDir = join(this.dir, 'state');
  /** The gateway runs in its own process, as `bunker gateway` does. */
  gateway: ChildProcess | undefined;
  app: ChildProcess | undefined;
  appPort = 0;
  gatewayAddress = '';

  constructor() {
    const env = (name: string, redisDb: number): EnvPaths => ({
      pgDb: `bt_safe_${this.id}_${name}`,
      redisDb,
      sqlite: join(this.dir, name, 'app.sqlite'),
      mount: join(this.dir, name, 'uploads'),
    });
    this.production = env('prod', 10);
    this.staging = env('stage', 11);
  }

  /** Creates empty data stores with zeroed counters in production, and the bunker.yaml. */
  async setUp(): Promise<void> {
    process.env.BUNKER_INSECURE_FAST_KDF = '1';
    await lockRedisDbs();
    for (const e of [this.production, this.staging]) {
      await pgQuery('postgres', `CREATE DATABASE "${e.pgDb}"`);
      mkdirSync(e.mount, { recursive: true });
      await redisCall(e.redisDb, (r) => r.flushdb());
    }
    const p = this.production;
    await pgQuery(p.pgDb, 'CREATE TABLE counter (n bigint NOT NULL); INSERT INTO counter VALUES (0)');
    const db = new Database(p.sqlite);
    db.pragma('journal_mode = WAL');
    db.exec('CREATE TABLE counter (n INTEGER NOT NULL); INSERT INTO counter VALUES (0)');
    db.close();
    writeFileSync(join(p.mount, 'hits.log'), '');
    writeFileSync(join(this.dir, 'password'), 'safe-backup-test-password\n');
    const services = (e: EnvPaths, spare: number) => `
    services:
      db: { type: postgresql, url: "${PG}/${e.pgDb}" }
      cache: { type: redis, url: "${REDIS}/${e.redisDb}", spare_db: ${spare} }
      app: { type: sqlite, path: "${e.sqlite}" }
    mounts:
      uploads: { path: "${e.mount}" }`;
    writeFileSync(
      this.configPath,
      `project: safe${this.id}
state_dir: state
storage:
  locations: [{ name: local, url: "file:repo" }]
  password_file: password
environments:
  production:
    type: production${services(this.production, 11)}
    gateway: { listen: "127.0.0.1:0", upstream: "http://127.0.0.1:APPPORT" }
  staging:
    type: staging${services(this.staging, 10)}
`,
    );
  }

  /** Starts the app (on `port`, 0 for any) and, the first time, the gateway in front of it. */
  async startApp(port = this.appPort): Promise<void> {
    const p = this.production;
    const child = spawn(process.execPath, [APP], {
      env: {
        ...process.env,
        PORT: String(port),
        PG_URL: `${PG}/${p.pgDb}?application_name=counter-app`,
        REDIS_URL: `${REDIS}/${p.redisDb}`,
        SQLITE_PATH: p.sqlite,
        MOUNT_DIR: p.mount,
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    this.app = child;
    this.appPort = await new Promise<number>((resolve, reject) => {
      child.stdout!.on('data', (d) => {
        const m = /listening (\d+)/.exec(String(d));
        if (m) resolve(Number(m[1]));
      });
      child.once('exit', (code) => reject(new Error(`counter app exited (${code})`)));
    });
    if (!this.gateway) {
      // bunker.yaml names the app's port now that it is known.
      writeFileSync(this.configPath, readFileSync(this.configPath, 'utf8').replace('APPPORT', String(this.appPort)));
      const js = transpileGateway(join(this.dir, 'js'));
      const script = `
        const { startGateways } = await import(${JSON.stringify(js)});
        const log = { debug() {}, info() {}, warn: (m) => process.stderr.write('gateway: ' + m + '\\n'), error: (m) => process.stderr.write('gateway: ' + m + '\\n') };
        const g = await startGateways([{ environment: 'production', listen: '127.0.0.1:0', upstream: 'http://127.0.0.1:${this.appPort}' }],
          { stateDir: ${JSON.stringify(this.stateDir)}, log });
        process.stdout.write('listening ' + g.addresses.production + '\\n');
        process.once('SIGTERM', () => g.close().then(() => process.exit(0)));
      `;
      const gateway = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
      this.gateway = gateway;
      this.gatewayAddress = await new Promise<string>((resolve, reject) => {
        gateway.stdout!.on('data', (d) => {
          const m = /listening (\S+)/.exec(String(d));
          if (m) resolve(m[1]!);
        });
        gateway.once('exit', (code) => reject(new Error(`gateway exited (${code})`)));
      });
    }
  }

  async stopGateway(): Promise<void> {
    const gateway = this.gateway;
    if (!gateway || gateway.exitCode !== null || gateway.signalCode !== null) return;
    const exited = new Promise((r) => gateway.once('exit', r));
    gateway.kill('SIGTERM');
    await exited;
  }

  async killApp(): Promise<void> {
    const app = this.app;
    if (!app || app.exitCode !== null || app.signalCode !== null) return;
    const exited = new Promise((r) => app.once('exit', r));
    app.kill('SIGKILL');
    await exited;
  }

  async counters(e: EnvPaths): Promise<Counters> {
    const pgValue = await pgQuery(e.pgDb, 'SELECT n FROM counter').then(
      (r) => Number(r.rows[0].n),
      () => null,
    );
    const redisValue = await redisCall(e.redisDb, (r) => r.get('counter')).then((v) => (v === null ? null : Number(v)));
    let sqliteValue: number | null = null;
    if (existsSync(e.sqlite)) {
      const db = new Database(e.sqlite, { readonly: true });
      try {
        sqliteValue = Number((db.prepare('SELECT n FROM counter').get() as { n: number }).n);
      } catch {
        sqliteValue = null;
      } finally {
        db.close();
      }
    }
    const log = join(e.mount, 'hits.log');
    const file = existsSync(log) ? readFileSync(log, 'utf8').split('\n').filter(Boolean).length : null;
    return { pg: pgValue, redis: redisValue, sqlite: sqliteValue, file };
  }

  /** Lines of an environment's hits.log: each is the PostgreSQL value of its request. */
  logLines(e: EnvPaths): number[] {
    return readFileSync(join(e.mount, 'hits.log'), 'utf8').split('\n').filter(Boolean).map(Number);
  }

  async tearDown(): Promise<void> {
    await this.killApp();
    await this.stopGateway();
    for (const e of [this.production, this.staging]) {
      await pgQuery('postgres', `DROP DATABASE IF EXISTS "${e.pgDb}" WITH (FORCE)`).catch(() => {});
      await redisCall(e.redisDb, (r) => r.flushdb()).catch(() => {});
    }
    rmSync(this.dir, { recursive: true, force: true });
    unlockRedisDbs();
  }
}

export interface HitResult {
  status: number;
  values?: { pg: number; redis: number; sqlite: number; file: number };
  error?: string;
  sentAt: number;
  latencyMs: number;
}

/** Sends POST /hit at `rps` until stop() is called; resolves with every result once all answered. */
export function startLoad(address: string, rps = 200): { stop(): Promise<HitResult[]>; count(): number } {
  const results: Promise<HitResult>[] = [];
  const started = performance.now();
  const send = (): Promise<HitResult> => {
    const sentAt = performance.now();
    return fetch(`http://${address}/hit`, { method: 'POST' }).then(
      async (res) => {
        const text = await res.text();
        const latencyMs = performance.now() - sentAt;
        return res.status === 200
          ? { status: res.status, values: JSON.parse(text), sentAt, latencyMs }
          : { status: res.status, error: text, sentAt, latencyMs };
      },
      (err: Error) => ({ status: 0, error: `${err.message} ${String((err as { cause?: unknown }).cause ?? '')}`, sentAt, latencyMs: performance.now() - sentAt }),
    );
  };
  // Catches up with the schedule on every tick, so timer jitter does not lower the rate.
  const timer = setInterval(() => {
    const due = Math.floor(((performance.now() - started) / 1000) * rps);
    while (results.length < due) results.push(send());
  }, 5);
  return {
    count: () => results.length,
    stop: async () => {
      clearInterval(timer);
      return Promise.all(results);
    },
  };
}

/** Problems with a run's answers: failures, and answers whose four values disagree or repeat. */
export function checkResults(results: HitResult[], initial = 0): string[] {
  const problems: string[] = [];
  const seen: number[] = [];
  for (const r of results) {
    if (r.status !== 200 || !r.values) {
      problems.push(`request failed: ${r.status} ${r.error ?? ''}`.trim());
      continue;
    }
    const { pg: p, redis, sqlite, file } = r.values;
    if (!(p === redis && p === sqlite && p === file)) problems.push(`values disagree: ${JSON.stringify(r.values)}`);
    seen.push(p);
  }
  seen.sort((a, b) => a - b);
  seen.forEach((v, i) => {
    if (v !== initial + i + 1) problems.push(`expected counter ${initial + i + 1}, got ${v}`);
  });
  return problems.slice(0, 20);
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
