// A restore killed with SIGKILL leaves its shadow database (and, past the point of no return, a target
// without its triggers and views yet). The next backup of that environment must not capture that state:
// the control plane sees the failed restore and lets the engine finish or undo it first.
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CliProject, ensureBuilt } from '../helpers/cli.js';
import { admin, dropDb, uniqueDb } from '../mariadb/helpers.js';
import { backupName } from './fixture.js';

const db = uniqueDb('recover');
const shadowPattern = `bks\\_${createHash('sha256').update(db).digest('hex').slice(0, 10)}\\_%`;

async function query<T>(sql: string, params: unknown[] = []): Promise<T[]> {
  const conn = await admin();
  try {
    const [rows] = await conn.query(sql, params);
    return rows as T[];
  } finally {
    await conn.end();
  }
}

const shadows = async () =>
  (await query<{ n: string }>('SELECT SCHEMA_NAME AS n FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE ?', [shadowPattern])).map((r) => r.n);
const fingerprint = async () =>
  JSON.stringify(await query(`SELECT id, v FROM \`${db}\`.items ORDER BY id`)) +
  JSON.stringify(await query('SELECT TRIGGER_NAME AS t FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = ?', [db]));

describe('a backup after a killed restore', () => {
  const p = new CliProject('bunker-recover-');
  let backup = '';
  let original = '';

  beforeAll(async () => {
    ensureBuilt();
    await query(`CREATE DATABASE \`${db}\``);
    const conn = await admin(db);
    try {
      await conn.query(`CREATE TABLE \`${db}\`.items (id INT PRIMARY KEY, v VARCHAR(200) NOT NULL)`);
      await conn.query(`CREATE TRIGGER \`${db}\`.items_upper BEFORE INSERT ON \`${db}\`.items FOR EACH ROW SET NEW.v = UPPER(NEW.v)`);
      // Enough rows that staging takes a while, so the kill lands inside it.
      await conn.query(
        `INSERT INTO \`${db}\`.items SELECT seq, REPEAT(CONCAT('row-', seq), 8) FROM seq_1_to_200000`,
      );
    } finally {
      await conn.end();
    }
    p.writeConfig(`project: e2e-recover
environments:
  main:
    type: production
    services:
      db: { type: mariadb, url: "mysql://root@127.0.0.1:3306/${db}" }
`);
    await p.ok(['init']);
    backup = backupName((await p.ok(['backup:create', '-y'])).stdout);
    original = await fingerprint();
  }, 120_000);

  afterAll(async () => {
    p.cleanup();
    await dropDb(db, ...(await shadows()));
  });

  it('finishes or undoes the interrupted restore before backing up', async () => {
    const child = p.spawn(['backup:restore', backup, '-y']);
    const exited = new Promise<void>((resolve) => child.on('close', () => resolve()));
    const deadline = Date.now() + 60_000;
    while ((await shadows()).length === 0 && Date.now() < deadline && child.exitCode === null) {
      await new Promise((r) => setTimeout(r, 5));
    }
    child.kill('SIGKILL');
    await exited;
    expect(await shadows(), 'the killed restore left its shadow database').not.toEqual([]);

    const after = await p.ok(['backup:create', '-y']);
    expect(after.stdout + after.stderr).toMatch(/interrupted restore/);
    expect(await shadows()).toEqual([]);
    expect(await fingerprint()).toBe(original);
  }, 120_000);

  it('does not look for one when the last restore succeeded', async () => {
    await p.ok(['backup:restore', backup, '-y']);
    const next = await p.ok(['backup:create', '-y']);
    expect(next.stdout + next.stderr).not.toMatch(/interrupted restore/);
    expect(await fingerprint()).toBe(original);
  }, 120_000);
});
