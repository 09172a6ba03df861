// A backup taken while sysbench oltp_write_only writes, and while transfers move money between two
// tables (logging each in a third), is consistent: restored into another database, every sysbench
// table still has exactly its prepared row count (its delete+insert pairs are atomic), and
// a - b balances match the transfer log exactly, though the three tables were copied on different
// connections.
import { z } from 'zod';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/core/log.js';
import { runBackup, runRestore } from '../../src/engines/engine.js';
import { mariadbEngine } from '../../src/engines/mariadb/index.js';
import type { Repository } from '../../src/repo/types.js';
import { createTestRepo, type TestRepo } from '../helpers/repo.js';
import { admin, dropDb, SERVER, uniqueDb, urlFor } from './helpers.js';

const db = uniqueDb('busy');
const copy = uniqueDb('busy_copy');
const TABLES = 4;
const TABLE_SIZE = 20_000;
const ACCOUNTS = 200;
let repo: TestRepo;
let sysbench: ChildProcess | undefined;

function sysbenchArgs(command: string): string[] {
  return [
    'oltp_write_only',
    '--db-driver=mysql',
    `--mysql-host=${SERVER.host}`,
    `--mysql-port=${SERVER.port}`,
    `--mysql-user=${SERVER.user}`,
    '--mysql-password=',
    `--mysql-db=${db}`,
    `--tables=${TABLES}`,
    `--table-size=${TABLE_SIZE}`,
    command,
  ];
}

beforeAll(async () => {
  repo = await createTestRepo();
  const conn = await admin();
  await conn.query(`CREATE DATABASE ${db}`);
  await conn.query(`USE ${db}`);
  await conn.query('CREATE TABLE ledger_a (id INT PRIMARY KEY, balance BIGINT NOT NULL) ENGINE=InnoDB');
  await conn.query('CREATE TABLE ledger_b (id INT PRIMARY KEY, balance BIGINT NOT NULL) ENGINE=InnoDB');
  await conn.query('CREATE TABLE transfers (id BIGINT AUTO_INCREMENT PRIMARY KEY, account INT NOT NULL, amount BIGINT NOT NULL) ENGINE=InnoDB');
  await conn.query(`INSERT INTO ledger_a SELECT seq, 1000000 FROM seq_1_to_${ACCOUNTS}`);
  await conn.query(`INSERT INTO ledger_b SELECT seq, 0 FROM seq_1_to_${ACCOUNTS}`);
  await conn.end();
  const prep = spawnSync('sysbench', sysbenchArgs('prepare'), { encoding: 'utf8' });
  if (prep.status !== 0) throw new Error(`sysbench prepare failed: ${prep.stderr}`);
}, 240_000);

afterAll(async () => {
  if (sysbench && sysbench.exitCode === null) sysbench.kill('SIGKILL');
  await dropDb(db, copy);
  await repo?.cleanup();
});

describe('mariadb backup under concurrent writes', () => {
  it('is a consistent snapshot across tables and connections', async () => {
    sysbench = spawn('sysbench', [...sysbenchArgs('run').slice(0, -1), '--threads=2', '--time=300', 'run'], { stdio: 'ignore' });
    let writing = true;
    let transfersDone = 0;
    const writer = (async () => {
      const conn = await admin(db);
      while (writing) {
        const account = 1 + Math.floor(Math.random() * ACCOUNTS);
        const amount = 1 + Math.floor(Math.random() * 100);
        await conn.query('START TRANSACTION');
        await conn.query('UPDATE ledger_a SET balance = balance - ? WHERE id = ?', [amount, account]);
        await conn.query('INSERT INTO transfers (account, amount) VALUES (?, ?)', [account, amount]);
        await conn.query('UPDATE ledger_b SET balance = balance + ? WHERE id = ?', [amount, account]);
        await conn.query('COMMIT');
        transfersDone++;
      }
      await conn.end();
    })();
    await new Promise((r) => setTimeout(r, 1500));

    const engine = (url: string) =>
      mariadbEngine.create('db', mariadbEngine.configSchema(z).parse({ url, jobs: 3 }), { configDir: '/tmp', stateDir: '/tmp', log: silentLogger });
    const before = transfersDone;
    const artifact = await runBackup(
      await engine(urlFor(db)).openBackup({ repo: repo.repo, log: silentLogger, progress: () => {}, signal: new AbortController().signal, mode: 'live' }),
    );
    const during = transfersDone - before;
    writing = false;
    await writer;
    expect(sysbench.exitCode, 'sysbench was still running when the backup finished').toBeNull();
    sysbench.kill('SIGKILL');
    expect(during, 'transfers committed while the backup ran').toBeGreaterThan(0);
    expect(Number(artifact.meta.pinMs)).toBeLessThan(2000);

    await repo.repo.flush();
    const reader: Repository = await repo.reopen();
    await runRestore(
      await engine(urlFor(copy)).openRestore({ repo: reader, log: silentLogger, progress: () => {}, signal: new AbortController().signal, options: {} }, artifact),
    );

    const c = await admin(copy);
    for (let t = 1; t <= TABLES; t++) {
      const [[r]] = await c.query<any[]>(`SELECT COUNT(*) AS n FROM sbtest${t}`);
      expect(Number(r.n), `rows in sbtest${t}`).toBe(TABLE_SIZE);
    }
    const [rows] = await c.query<any[]>(
      `SELECT a.id, a.balance AS a, b.balance AS b, COALESCE(t.total, 0) AS moved
         FROM ledger_a a JOIN ledger_b b USING (id)
         LEFT JOIN (SELECT account, SUM(amount) AS total FROM transfers GROUP BY account) t ON t.account = a.id`,
    );
    const [[log]] = await c.query<any[]>('SELECT COUNT(*) AS n FROM transfers');
    await c.end();
    expect(rows.length).toBe(ACCOUNTS);
    expect(Number(log.n)).toBeGreaterThan(0);
    for (const r of rows) {
      expect(Number(r.a), `account ${r.id}`).toBe(1000000 - Number(r.moved));
      expect(Number(r.b), `account ${r.id}`).toBe(Number(r.moved));
    }
  });
});
