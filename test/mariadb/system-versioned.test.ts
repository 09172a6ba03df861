// System-versioned tables keep every past version of their rows with the period it was current in.
// A backup carries all versions (FOR SYSTEM_TIME ALL) and a restore puts them back with their periods
// as they were: implicit ROW_START/ROW_END, declared period columns, and history partitions.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RowDataPacket } from 'mysql2/promise';
import { silentLogger } from '../../src/core/log.js';
import { runBackup, runRestore } from '../../src/engines/engine.js';
import { createTestRepo, type TestRepo } from '../helpers/repo.js';
import { admin, dropDb, engineFor as engine, uniqueDb } from './helpers.js';

const source = uniqueDb('versioned');
const target = uniqueDb('versioned_target');
const signal = new AbortController().signal;
let repo: TestRepo;

beforeAll(async () => {
  repo = await createTestRepo();
  const conn = await admin();
  await conn.query(`CREATE DATABASE ${source}`);
  await conn.query(`USE ${source}`);
  // Implicit period columns, a secondary index (built after the load), and a deleted row.
  await conn.query('CREATE TABLE account (id INT PRIMARY KEY, owner VARCHAR(20), balance INT, KEY owner (owner)) WITH SYSTEM VERSIONING');
  await conn.query("INSERT INTO account VALUES (1, 'ann', 10), (2, 'bob', 20), (3, 'cy', 30)");
  await conn.query('UPDATE account SET balance = balance + 5 WHERE id <= 2');
  await conn.query('UPDATE account SET balance = 0 WHERE id = 1');
  await conn.query('DELETE FROM account WHERE id = 3');
  // Declared period columns, one of them invisible.
  await conn.query(
    `CREATE TABLE price (sku INT PRIMARY KEY, cents INT,
       valid_from TIMESTAMP(6) GENERATED ALWAYS AS ROW START INVISIBLE, valid_to TIMESTAMP(6) GENERATED ALWAYS AS ROW END,
       PERIOD FOR SYSTEM_TIME (valid_from, valid_to)) WITH SYSTEM VERSIONING`,
  );
  await conn.query('INSERT INTO price (sku, cents) VALUES (7, 100), (8, 200)');
  await conn.query('UPDATE price SET cents = 150 WHERE sku = 7');
  // History kept in its own partition.
  await conn.query('CREATE TABLE event_log (id INT PRIMARY KEY, note VARCHAR(20)) WITH SYSTEM VERSIONING PARTITION BY SYSTEM_TIME (PARTITION p_hist HISTORY, PARTITION p_cur CURRENT)');
  await conn.query("INSERT INTO event_log VALUES (1, 'first'), (2, 'second')");
  await conn.query("UPDATE event_log SET note = 'edited' WHERE id = 1");
  await conn.end();
});

afterAll(async () => {
  await dropDb(source, target);
  await repo?.cleanup();
});

/** A period column as text with its microseconds (a JS Date would keep milliseconds only). */
const us = (column: string) => `CAST(${column} AS CHAR)`;

/** Every version of every row, with its period, in a fixed order; and each table's definition. */
async function versions(db: string): Promise<Record<string, unknown>> {
  const conn = await admin();
  try {
    const all = async (sql: string) => (await conn.query<RowDataPacket[]>(sql))[0].map((r) => ({ ...r }));
    const create = async (table: string) => String((await conn.query<RowDataPacket[]>(`SHOW CREATE TABLE ${db}.${table}`))[0][0]!['Create Table']);
    return {
      account: await all(`SELECT id, owner, balance, ${us('ROW_START')} AS s, ${us('ROW_END')} AS e FROM ${db}.account FOR SYSTEM_TIME ALL ORDER BY id, e`),
      price: await all(`SELECT sku, cents, ${us('valid_from')} AS s, ${us('valid_to')} AS e FROM ${db}.price FOR SYSTEM_TIME ALL ORDER BY sku, e`),
      eventLog: await all(`SELECT id, note, ${us('ROW_START')} AS s, ${us('ROW_END')} AS e FROM ${db}.event_log FOR SYSTEM_TIME ALL ORDER BY id, e`),
      historyPartition: await all(`SELECT id, note FROM ${db}.event_log PARTITION (p_hist) ORDER BY id`),
      creates: [await create('account'), await create('price'), await create('event_log')],
    };
  } finally {
    await conn.end();
  }
}

describe('mariadb system-versioned tables', () => {
  it('back up and restore every row version with its period', async () => {
    const artifact = await runBackup(await engine(source).openBackup({ repo: repo.repo, log: silentLogger, progress: () => {}, signal, mode: 'live' }));
    expect(artifact.format).toBe(2);
    expect(artifact.warnings).toEqual([]);
    const before = await versions(source);
    // The fixture really has history: 3 + 2 + 1 past versions next to the current rows.
    expect((before.account as unknown[]).length).toBe(6);
    expect((before.price as unknown[]).length).toBe(3);
    expect((before.historyPartition as unknown[]).length).toBe(1);

    await runRestore(await engine(target).openRestore({ repo: repo.repo, log: silentLogger, progress: () => {}, signal, options: {} }, artifact));
    expect(await versions(target)).toEqual(before);
    // Querying as of a past moment gives the past: ann's balance before it was set to 0.
    const conn = await admin();
    const [[past]] = await conn.query<RowDataPacket[]>(
      `SELECT balance FROM ${target}.account FOR SYSTEM_TIME AS OF TIMESTAMP ? WHERE id = 1`,
      [(before.account as { s: string }[])[1]!.s],
    );
    await conn.end();
    expect(past).toEqual({ balance: 15 });
  }, 60_000);
});
