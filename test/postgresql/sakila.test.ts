// Sakila round trip through the real server: backup, damage, restore in place and into another database.
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestRepo, type TestRepo } from '../helpers/repo.js';
import { backup, createDb, dropDb, engineFor, fingerprint, psqlFile, restore, sql, testLogger, uniqueDb } from './pg-fixture.js';
import type { ServiceArtifact } from '../../src/repo/types.js';
import { isBunkerError } from '../../src/core/errors.js';
import { sideNames } from '../../src/engines/postgresql/restore.js';

// shared/ sits beside the checkout (locally and in CI).
const SAKILA = fileURLToPath(new URL('../../../shared/datasets/sakila-postgresql', import.meta.url));

describe('postgresql engine: Sakila', () => {
  const source = uniqueDb('sakila');
  const other = uniqueDb('sakila_other');
  let store: TestRepo;
  let artifact: ServiceArtifact;
  let before: Awaited<ReturnType<typeof fingerprint>>;

  beforeAll(async () => {
    store = await createTestRepo();
    await createDb(source);
    await psqlFile(source, `${SAKILA}/schema.sql`);
    await psqlFile(source, `${SAKILA}/data.sql`);
    before = await fingerprint(source);
    artifact = await backup(engineFor(source), store.repo);
    await store.repo.flush();
  });

  afterAll(async () => {
    await dropDb(source);
    await dropDb(other);
    await store?.cleanup();
  });

  it('backs up every table as its own stream', async () => {
    const { rows } = await sql(source, "SELECT count(*)::int AS n FROM pg_tables WHERE schemaname = 'public'");
    expect(rows[0].n).toBeGreaterThanOrEqual(15);
    expect(Object.keys(artifact.streams).filter((k) => k.startsWith('table:')).length).toBe(rows[0].n);
    expect(artifact.size).toBeGreaterThan(1_000_000);
  });

  it('a second backup of the unchanged database reuses every table stream', async () => {
    const storedBefore = store.repo.stats().storedBytes;
    const again = await backup(engineFor(source), store.repo);
    const tableKeys = Object.keys(artifact.streams).filter((k) => k.startsWith('table:'));
    for (const key of tableKeys) expect(again.streams[key], key).toEqual(artifact.streams[key]);
    // Only the schema archive (it carries pg_dump's timestamp) may add anything.
    expect(store.repo.stats().storedBytes - storedBefore).toBeLessThanOrEqual(artifact.streams.schema!.size);
  });

  it('restores over a damaged database to exactly the backed-up state', async () => {
    await sql(source, 'DROP TABLE payment CASCADE');
    await sql(source, "UPDATE actor SET first_name = 'X' WHERE actor_id < 50");
    await sql(source, "SELECT setval('film_film_id_seq', 99999)");
    expect(await fingerprint(source)).not.toEqual(before);
    const lines: string[] = [];
    await restore(engineFor(source), store.repo, artifact, testLogger(lines));
    expect(await fingerprint(source)).toEqual(before);
    expect(lines.some((l) => /ended \d+ connection\(s\) to database/.test(l))).toBe(true);
  });

  it('refuses a second concurrent restore of the same target; abort() drops the shadow', async () => {
    const open = () =>
      engineFor(source).openRestore(
        { repo: store.repo, log: testLogger(), progress: () => {}, signal: new AbortController().signal, options: {} },
        artifact,
      );
    await sql(source, "UPDATE actor SET last_name = 'CHANGED' WHERE actor_id = 1");
    const changed = await fingerprint(source);
    const first = await open();
    await first.stage();
    const second = await open();
    const err = await second.stage().then(() => undefined, (e: unknown) => e);
    expect(isBunkerError(err, 'locked')).toBe(true);
    await second.abort();
    const { shadow } = sideNames(source);
    expect((await sql('postgres', `SELECT count(*)::int AS n FROM pg_database WHERE datname = '${shadow}'`)).rows[0].n).toBe(1);
    await first.abort();
    expect((await sql('postgres', `SELECT count(*)::int AS n FROM pg_database WHERE datname = '${shadow}'`)).rows[0].n).toBe(0);
    expect(await fingerprint(source)).toEqual(changed);
  });

  it('restores into another database name', async () => {
    await restore(engineFor(other), store.repo, artifact);
    expect(await fingerprint(other)).toEqual(before);
  });
});
