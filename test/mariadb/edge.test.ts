// The edge-case database (edge-schema.sql): every column type, generated columns, MyISAM and Aria,
// tables without a primary key, partitions, a sequence, views, triggers, routines and an event
// must come back identical, in place after damage and in another database.
import { z } from 'zod';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BunkerError } from '../../src/core/errors.js';
import { createLogger, silentLogger } from '../../src/core/log.js';
import { runBackup, runRestore } from '../../src/engines/engine.js';
import { mariadbEngine } from '../../src/engines/mariadb/index.js';
import type { ServiceArtifact } from '../../src/repo/types.js';
import { createTestRepo, type TestRepo } from '../helpers/repo.js';
import type { Repository } from '../../src/repo/types.js';
import { admin, dropDb, engineFor as engine, fingerprint, leftovers, runScript, uniqueDb, urlFor } from './helpers.js';

const env = { configDir: '/tmp', stateDir: '/tmp', log: silentLogger };
const source = uniqueDb('edge');
const other = uniqueDb('edge_other');
let repo: TestRepo;
/** A second handle on the same repository, opened after the backup was flushed: what a restore in another process sees. */
let reader: Repository | undefined;

const signal = new AbortController().signal;

async function backup(db: string): Promise<ServiceArtifact> {
  return runBackup(await engine(db).openBackup({ repo: repo.repo, log: silentLogger, progress: () => {}, signal, mode: 'live' }));
}

/** Restores and returns the engine's log lines. */
async function restore(db: string, artifact: ServiceArtifact): Promise<string[]> {
  const lines: string[] = [];
  const log = createLogger((_l, line) => lines.push(line), 'debug');
  await runRestore(await engine(db).openRestore({ repo: await readerRepo(), log, progress: () => {}, signal, options: {} }, artifact));
  return lines;
}

async function readerRepo(): Promise<Repository> {
  if (!reader) {
    await repo.repo.flush();
    reader = await repo.reopen();
  }
  return reader;
}

beforeAll(async () => {
  repo = await createTestRepo();
  const conn = await admin();
  await conn.query(`CREATE DATABASE ${source} CHARACTER SET latin1 COLLATE latin1_german1_ci`);
  await conn.end();
  await runScript(readFileSync(new URL('edge-schema.sql', import.meta.url), 'utf8'), source);
});

afterAll(async () => {
  await dropDb(source, other);
  await repo?.cleanup();
});

describe('mariadb engine on the edge-case database', () => {
  it('round-trips every type and object, in place and into another database', async () => {
    const before = await fingerprint(source);
    expect(before.database).toBe('latin1 latin1_german1_ci');
    expect(Object.keys(before.objects).filter((k) => k.startsWith('table ')).length).toBe(10);
    const artifact = await backup(source);
    expect(artifact.warnings).toEqual([]);

    const conn = await admin(source);
    await conn.query('SET foreign_key_checks = 0');
    await conn.query('DROP TABLE types, legacy_myisam, parted');
    await conn.query("UPDATE legacy_aria SET body = 'changed'");
    await conn.query('DELETE FROM no_pk WHERE a IS NULL');
    await conn.query('DROP SEQUENCE order_seq');
    await conn.query('DROP EVENT nightly_cleanup');
    await conn.query('DROP FUNCTION parent_label');
    await conn.query('DROP TRIGGER child_ai_second');
    await conn.query('CREATE VIEW extra_view AS SELECT 1 AS one');
    await conn.query('ALTER DATABASE CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci');
    await conn.end();
    expect(await fingerprint(source)).not.toEqual(before);

    const log = await restore(source, artifact);
    expect(await fingerprint(source)).toEqual(before);
    // The indexes of the one table over 1 MiB were really built after its load, and SHOW CREATE
    // still came out equal: all but its hash-based unique key (the foreign key's index included).
    const built = log.filter((l) => l.includes('secondary indexes built after loading'));
    expect(built).toEqual(['mariadb: indexed: 6 secondary indexes built after loading']);

    await restore(other, artifact);
    expect(await fingerprint(other)).toEqual(before);
    expect(await leftovers(source)).toEqual([]);
    expect(await leftovers(other)).toEqual([]);

    // The restored objects work, not just look right: triggers fire in order, the sequence continues.
    const c = await admin(other);
    await c.query('CALL add_child(2, ?, @id)', ['from the procedure']);
    const [[audit]] = await c.query<any[]>("SELECT GROUP_CONCAT(LEFT(what, 6) ORDER BY id) AS w FROM audit");
    expect(audit.w).toBe('child ,second');
    const [[seq]] = await c.query<any[]>('SELECT NEXTVAL(order_seq) AS n');
    const s = await admin(source);
    const [[src]] = await s.query<any[]>('SELECT NEXTVAL(order_seq) AS n');
    expect(String(seq.n)).toBe(String(src.n));
    await Promise.all([c.end(), s.end()]);
  });

  it('reports a wrong password or an unreachable server as BunkerErrors without the password', async () => {
    const probe = (url: string) => mariadbEngine.create('db', mariadbEngine.configSchema(z).parse({ url }), env).probe();
    const denied = await probe(`mysql://root:Sup3rSecretPw@127.0.0.1:3306/${source}`).catch((e) => e);
    expect(denied).toBeInstanceOf(BunkerError);
    expect(denied.code).toBe('engine');
    expect(denied.message).toContain('Access denied');
    expect(`${denied.message} ${denied.hint}`).not.toContain('Sup3rSecretPw');
    const refused = await probe('mysql://root:Sup3rSecretPw@127.0.0.1:1/x').catch((e) => e);
    expect(refused).toBeInstanceOf(BunkerError);
    expect(refused.code).toBe('unreachable');
    expect(`${refused.message} ${refused.hint}`).not.toContain('Sup3rSecretPw');
    const ok = await probe(urlFor(source));
    expect(ok.version).toMatch(/^MariaDB 10\.|^MySQL /);
  });

  it('refuses a url without a database, without showing the password', () => {
    const r = mariadbEngine.configSchema(z).safeParse({ url: 'mysql://app:s3cretpw@db.example:3306/' });
    expect(r.success).toBe(false);
    expect(JSON.stringify(r.error?.issues)).toContain('does not name one database');
    expect(JSON.stringify(r.error?.issues)).not.toContain('s3cretpw');
  });
});
