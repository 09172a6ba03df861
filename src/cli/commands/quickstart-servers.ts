// The quickstart's optional services: PostgreSQL, MariaDB and Redis on localhost, each included only
// when its engine is built and its server answers within a second. Each seeds small sample data per
// environment and computes a digest of it, so the tour can show main and staging are equal.
import { createHash } from 'node:crypto';
import { Redis } from 'ioredis';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { findEngine } from '../../engines/registry.js';
import { silentLogger } from '../../core/log.js';

export interface SampleServer {
  service: string;
  type: string;
  /** The flow-style YAML entry for the environment. */
  yaml(env: string): string;
  seed(env: string, run: string): Promise<void>;
  digest(env: string): Promise<string>;
  close(): Promise<void>;
}

const PG_ADMIN = { host: '127.0.0.1', port: 5432, user: 'postgres', database: 'postgres', connectionTimeoutMillis: 1000 };
const MY_ADMIN = { host: '127.0.0.1', port: 3306, user: 'root', password: '', connectTimeout: 1000 };
const REDIS_DB: Record<string, number> = { main: 12, staging: 13 };
const dbName = (env: string) => `bunker_quickstart_${env}`;

function hashRows(rows: unknown[]): string {
  return `${rows.length} rows, sha256 ${createHash('sha256').update(JSON.stringify(rows)).digest('hex').slice(0, 12)}`;
}

/** True when the type's engine is the real one (placeholders refuse to create). */
function engineBuilt(type: string, config: unknown): boolean {
  const engine = findEngine(type);
  if (!engine) return false;
  try {
    engine.create('probe', config, { configDir: process.cwd(), stateDir: process.cwd(), log: silentLogger });
    return true;
  } catch {
    return false;
  }
}

async function postgres(): Promise<SampleServer | undefined> {
  if (!engineBuilt('postgresql', { url: `postgresql://postgres@127.0.0.1:5432/${dbName('main')}` })) return undefined;
  const admin = new pg.Client(PG_ADMIN);
  admin.on('error', () => {});
  await admin.connect();
  const query = async <T>(env: string, text: string, values: unknown[] = []): Promise<T[]> => {
    const client = new pg.Client({ ...PG_ADMIN, database: dbName(env) });
    client.on('error', () => {});
    await client.connect();
    try {
      return (await client.query(text, values)).rows as T[];
    } finally {
      await client.end();
    }
  };
  return {
    service: 'db',
    type: 'postgresql',
    yaml: (env) => `{ type: postgresql, url: "postgresql://postgres@127.0.0.1:5432/${dbName(env)}" }`,
    async seed(env, run) {
      await admin.query(`DROP DATABASE IF EXISTS ${dbName(env)} WITH (FORCE)`);
      await admin.query(`CREATE DATABASE ${dbName(env)}`);
      await query(env, 'CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL, since date NOT NULL)');
      if (env === 'main') {
        await query(env, `INSERT INTO customers (name, since) SELECT 'customer ' || g, DATE '2020-01-01' + g FROM generate_series(1, 300) g`);
        await query(env, `INSERT INTO customers (name, since) VALUES ($1, CURRENT_DATE)`, [`quickstart run ${run}`]);
      } else {
        await query(env, `INSERT INTO customers (name, since) VALUES ('staging only', CURRENT_DATE)`);
      }
    },
    digest: async (env) => hashRows(await query(env, 'SELECT id, name, since::text FROM customers ORDER BY id')),
    close: () => admin.end(),
  };
}

async function mariadb(): Promise<SampleServer | undefined> {
  if (!engineBuilt('mariadb', { url: `mysql://root@127.0.0.1:3306/${dbName('main')}` })) return undefined;
  const conn = await mysql.createConnection({ ...MY_ADMIN, multipleStatements: false });
  return {
    service: 'shop',
    type: 'mariadb',
    yaml: (env) => `{ type: mariadb, url: "mysql://root@127.0.0.1:3306/${dbName(env)}" }`,
    async seed(env, run) {
      await conn.query(`DROP DATABASE IF EXISTS ${dbName(env)}`);
      await conn.query(`CREATE DATABASE ${dbName(env)}`);
      await conn.query(`CREATE TABLE ${dbName(env)}.products (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(100) NOT NULL, price DECIMAL(8,2) NOT NULL)`);
      if (env === 'main') {
        const values = Array.from({ length: 200 }, (_, i) => [`product ${i + 1}`, ((i * 37) % 1000) / 10 + 1]);
        values.push([`quickstart run ${run}`, 9.99]);
        await conn.query(`INSERT INTO ${dbName(env)}.products (name, price) VALUES ?`, [values]);
      } else {
        await conn.query(`INSERT INTO ${dbName(env)}.products (name, price) VALUES ('staging only', 1.00)`);
      }
    },
    async digest(env) {
      const [rows] = await conn.query(`SELECT id, name, CAST(price AS CHAR) AS price FROM ${dbName(env)}.products ORDER BY id`);
      return hashRows(rows as unknown[]);
    },
    close: () => conn.end(),
  };
}

async function redis(): Promise<SampleServer | undefined> {
  if (!engineBuilt('redis', { url: 'redis://127.0.0.1:6379/12' })) return undefined;
  const client = new Redis({ host: '127.0.0.1', port: 6379, lazyConnect: true, connectTimeout: 1000, maxRetriesPerRequest: 0, retryStrategy: () => null });
  client.on('error', () => {});
  await client.connect();
  const use = async (env: string) => {
    await client.select(REDIS_DB[env]!);
  };
  return {
    service: 'cache',
    type: 'redis',
    yaml: (env) => `{ type: redis, url: "redis://127.0.0.1:6379/${REDIS_DB[env]}" }`,
    async seed(env, run) {
      await use(env);
      await client.flushdb();
      if (env === 'main') {
        const pipeline = client.pipeline();
        for (let i = 1; i <= 100; i++) pipeline.set(`session:${i}`, `user ${i}`);
        pipeline.hset('stats', { visits: '1234', run });
        await pipeline.exec();
      } else {
        await client.set('staging:only', 'yes');
      }
    },
    async digest(env) {
      await use(env);
      const keys = (await client.keys('*')).sort();
      const entries: unknown[] = [];
      for (const key of keys) {
        const type = await client.type(key);
        entries.push([key, type === 'hash' ? await client.hgetall(key) : await client.get(key)]);
      }
      return `${keys.length} keys, sha256 ${createHash('sha256').update(JSON.stringify(entries)).digest('hex').slice(0, 12)}`;
    },
    close: async () => void client.disconnect(),
  };
}

/** The servers that answer and whose engines are built; says which are left out and why. */
export async function detectServers(say: (line: string) => void): Promise<SampleServer[]> {
  const found: SampleServer[] = [];
  for (const [label, open] of [
    ['PostgreSQL on 127.0.0.1:5432', postgres],
    ['MariaDB on 127.0.0.1:3306', mariadb],
    ['Redis on 127.0.0.1:6379 (db 12 and 13)', redis],
  ] as const) {
    try {
      const server = await open();
      if (server) {
        found.push(server);
        say(`including ${label}`);
      } else say(`leaving out ${label.split(' ')[0]}: its engine is not built yet`);
    } catch (err) {
      say(`leaving out ${label}: not reachable (${(err as Error).message.split('\n')[0]})`);
    }
  }
  return found;
}
