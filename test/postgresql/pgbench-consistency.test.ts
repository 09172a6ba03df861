// A backup taken while pgbench writes is one consistent point: in the restored copy the balances of
// accounts, tellers and branches all equal the sum of the history deltas.
import { spawn, execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { createTestRepo, type TestRepo } from '../helpers/repo.js';
import { TOOL_ENV, backup, createDb, dropDb, engineFor, restore, sql, uniqueDb } from './pg-fixture.js';

const run = promisify(execFile);
const PGBENCH = '/usr/bin/pgbench';

async function invariant(db: string) {
  const { rows } = await sql(
    db,
    `SELECT (SELECT sum(abalance) FROM pgbench_accounts)::bigint AS accounts,
            (SELECT sum(tbalance) FROM pgbench_tellers)::bigint AS tellers,
            (SELECT sum(bbalance) FROM pgbench_branches)::bigint AS branches,
            (SELECT coalesce(sum(delta), 0) FROM pgbench_history)::bigint AS history,
            (SELECT count(*) FROM pgbench_history)::int AS transactions`,
  );
  return rows[0] as { accounts: string; tellers: string; branches: string; history: string; transactions: number };
}

describe('postgresql engine: backup under pgbench writes', () => {
  const source = uniqueDb('pgbench');
  const copy = uniqueDb('pgbench_copy');
  let store: TestRepo;

  afterAll(async () => {
    await dropDb(source);
    await dropDb(copy);
    await store?.cleanup();
  });

  it('keeps the pgbench invariant in the restored copy', async () => {
    store = await createTestRepo();
    await createDb(source);
    // Scale 10: pgbench_accounts (~130 MB) is larger than a quarter of the default shared_buffers, so it
    // is read in one plain scan (format.ts, partsFor), while pgbench keeps writing to it.
    await run(PGBENCH, ['-i', '-q', '-s', '10', source], { env: TOOL_ENV });
    const bench = spawn(PGBENCH, ['-c', '4', '-j', '2', '-T', '120', '-n', source], { env: TOOL_ENV, stdio: 'ignore' });
    let parts = 0;
    try {
      // Let writes get going, then back up in the middle of them.
      for (let i = 0; i < 100 && (await invariant(source)).transactions < 200; i++) await new Promise((r) => setTimeout(r, 100));
      const artifact = await backup(engineFor(source), store.repo);
      await store.repo.flush();
      const tables = artifact.meta.tables as { name: string; parts: number }[];
      parts = tables.find((t) => t.name === 'pgbench_accounts')!.parts;
      await new Promise((r) => setTimeout(r, 500));
      bench.kill('SIGTERM');
      await new Promise((r) => bench.once('close', r));
      await restore(engineFor(copy), store.repo, artifact);
    } finally {
      bench.kill('SIGKILL');
    }
    const { rows } = await sql(
      source,
      `SELECT pg_relation_size('pgbench_accounts') / current_setting('block_size')::int AS pages,
              (SELECT setting::bigint FROM pg_settings WHERE name = 'shared_buffers') AS buffers`,
    );
    expect(Number(rows[0].pages)).toBeGreaterThan(Number(rows[0].buffers) / 4);
    expect(parts).toBe(1);
    const accounts = await sql(copy, 'SELECT count(*)::int AS n, count(DISTINCT aid)::int AS d FROM pgbench_accounts');
    expect(accounts.rows[0]).toEqual({ n: 1_000_000, d: 1_000_000 });
    const restored = await invariant(copy);
    const live = await invariant(source);
    expect(restored.transactions).toBeGreaterThan(0);
    // Writes continued after the snapshot, so the copy is an earlier, but whole, state.
    expect(live.transactions).toBeGreaterThan(restored.transactions);
    expect(restored.accounts).toBe(restored.history);
    expect(restored.tellers).toBe(restored.history);
    expect(restored.branches).toBe(restored.history);
  }, 300_000);
});
