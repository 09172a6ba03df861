// Restores load shadow tables with unique_checks off (MariaDB's bulk-insert path), which reports a
// duplicate key only at commit, as "Got error 1 during COMMIT". A backup whose rows collide on a unique
// key (here crafted: one row's line stored twice) must fail with a hint that says what that means, and
// leave the target as it was.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RowDataPacket } from 'mysql2/promise';
import { BunkerError } from '../../src/core/errors.js';
import { silentLogger } from '../../src/core/log.js';
import { runBackup, runRestore } from '../../src/engines/engine.js';
import type { ServiceArtifact } from '../../src/repo/types.js';
import { createTestRepo, type TestRepo } from '../helpers/repo.js';
import { admin, dropDb, engineFor as engine, fingerprint, uniqueDb } from './helpers.js';

const source = uniqueDb('dupkey');
const target = uniqueDb('dupkey_target');
const signal = new AbortController().signal;
let repo: TestRepo;

beforeAll(async () => {
  repo = await createTestRepo();
  const conn = await admin();
  await conn.query(`CREATE DATABASE ${source}`);
  await conn.query(`CREATE TABLE ${source}.member (id INT PRIMARY KEY, email VARCHAR(100) NOT NULL, UNIQUE KEY email (email)) ENGINE=InnoDB`);
  await conn.query(`INSERT INTO ${source}.member VALUES (1, 'a@example.org'), (2, 'b@example.org'), (3, 'c@example.org')`);
  await conn.query(`CREATE DATABASE ${target}`);
  await conn.query(`CREATE TABLE ${target}.member (id INT PRIMARY KEY, email VARCHAR(100) NOT NULL) ENGINE=InnoDB`);
  await conn.query(`INSERT INTO ${target}.member VALUES (9, 'kept@example.org')`);
  await conn.end();
});

afterAll(async () => {
  await dropDb(source, target);
  await repo?.cleanup();
});

describe('mariadb restore of rows that collide on a unique key', () => {
  it('fails naming the cause, and the target keeps its tables', async () => {
    const artifact = await runBackup(await engine(source).openBackup({ repo: repo.repo, log: silentLogger, progress: () => {}, signal, mode: 'live' }));
    // The member table's stream with its first row repeated under another id: a new primary key, the
    // same email. The schema stream (a JSON document) holds each table's stream key and row count.
    const read = async (key: string) => {
      const chunks: Buffer[] = [];
      for await (const chunk of repo.repo.readStream(artifact.streams[key]!)) chunks.push(chunk as Buffer);
      return Buffer.concat(chunks).toString('utf8');
    };
    const doc = JSON.parse(await read('schema')) as { data: Record<string, { stream: string; rows: number }> };
    const entry = doc.data.member!;
    const text = await read(entry.stream);
    expect(text.split('\n')[0]).toBe('1\ta@example.org');
    const writer = repo.repo.writeStream({ label: 'crafted' });
    writer.end(Buffer.from(text + '4\ta@example.org\n'));
    doc.data.member = { ...entry, rows: entry.rows + 1 };
    const crafted: ServiceArtifact = {
      ...artifact,
      streams: { ...artifact.streams, [entry.stream]: await writer.done(), schema: await repo.repo.storeBuffer(Buffer.from(JSON.stringify(doc))) },
    };
    await repo.repo.flush();
    const before = await fingerprint(target);

    const failure = await runRestore(await engine(target).openRestore({ repo: repo.repo, log: silentLogger, progress: () => {}, signal, options: {} }, crafted)).catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(BunkerError);
    expect((failure as BunkerError).message).toMatch(/^mariadb: loading table member: .*during COMMIT/);
    expect((failure as BunkerError).hint).toMatch(/how it reports a duplicate key/);
    expect(await fingerprint(target)).toEqual(before);
    const conn = await admin();
    const [rows] = await conn.query<RowDataPacket[]>(`SELECT id, email FROM ${target}.member`);
    await conn.end();
    expect(rows).toEqual([{ id: 9, email: 'kept@example.org' }]);
  }, 60_000);
});
