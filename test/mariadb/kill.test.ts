// A restore killed with SIGKILL at random points (while staging, and just after staging, in the
// commit) leaves the target's tables wholly old or wholly new; the next restore's recovery (here
// recoverInterruptedRestores) then leaves every object wholly old or wholly new, and no shadow
// databases. A kill past the commit's point of no return is rolled forward, so "old tables" can
// recover to "new".
import { z } from 'zod';
import { spawn, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/core/log.js';
import { runBackup } from '../../src/engines/engine.js';
import { mariadbEngine, recoverInterruptedRestores } from '../../src/engines/mariadb/index.js';
import { createTestRepo, type TestRepo } from '../helpers/repo.js';
import { admin, dropDb, fingerprint, leftovers, loadSakila, uniqueDb, urlFor, type Fingerprint } from './helpers.js';

const root = new URL('../../', import.meta.url).pathname;
const outDir = `${root}node_modules/.cache/bunker-mariadb-kill`;
const db = uniqueDb('kill');
let repo: TestRepo;
let artifactPath: string;
let fresh: Fingerprint;
let damaged: Fingerprint;

/**
 * Runs the child restore, killing it `delayMs` after it starts (or after it prints "staged"); an
 * infinite delay lets it finish. Also reports how long the child took to print "staged".
 */
function killedRestore(delayMs: number, afterStaged: boolean): Promise<{ result: string; stagedMs?: number }> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    let stagedMs: number | undefined;
    const child = spawn(process.execPath, [`${outDir}/test/mariadb/restore-child.js`, repo.dir, repo.password, artifactPath, urlFor(db)], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    const kill = () => Number.isFinite(delayMs) && setTimeout(() => child.kill('SIGKILL'), delayMs);
    if (!afterStaged) kill();
    child.stdout.on('data', (d: Buffer) => {
      const before = out;
      out += d.toString();
      if (!before.includes('staged') && out.includes('staged')) {
        stagedMs = Date.now() - started;
        if (afterStaged) kill();
      }
    });
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('exit', (code, sig) => {
      if (code !== 0 && sig !== 'SIGKILL') reject(new Error(`restore child failed (${code}): ${err}`));
      else resolve({ result: out.includes('committed') ? 'finished' : 'killed', ...(stagedMs === undefined ? {} : { stagedMs }) });
    });
  });
}

async function sessionGone(): Promise<void> {
  const conn = await admin();
  try {
    for (let i = 0; i < 300; i++) {
      const [[r]] = await conn.query<any[]>('SELECT IS_USED_LOCK(?) AS holder', [`bunker-restore:${db}`]);
      if (r.holder === null) return;
      await new Promise((res) => setTimeout(res, 100));
    }
    throw new Error('the killed restore still holds its lock after 30 s');
  } finally {
    await conn.end();
  }
}

async function damage(): Promise<void> {
  const conn = await admin(db);
  await conn.query('SET foreign_key_checks = 0');
  for (const t of ['actor', 'address', 'category', 'city', 'country', 'customer', 'film', 'film_actor', 'film_category', 'film_text', 'inventory', 'language', 'payment', 'rental', 'staff', 'store']) {
    await conn.query(`DELETE FROM ${t} LIMIT 1`);
  }
  await conn.query('DROP VIEW sales_by_store');
  await conn.query('DROP TRIGGER rental_date');
  await conn.end();
}

beforeAll(async () => {
  const tsc = spawnSync(
    process.execPath,
    [`${root}node_modules/typescript/bin/tsc`, '--outDir', outDir, '--rootDir', root, '--module', 'NodeNext', '--moduleResolution', 'NodeNext',
      '--target', 'ES2022', '--types', 'node', '--skipLibCheck', '--esModuleInterop', '--sourceMap', 'false', `${root}test/mariadb/restore-child.ts`],
    { encoding: 'utf8', cwd: root },
  );
  // Type errors elsewhere in the tree do not stop tsc from emitting; a missing child file does.
  writeFileSync(`${outDir}/package.json`, '{"type":"module"}\n');
  if (tsc.error) throw tsc.error;
  repo = await createTestRepo();
  await loadSakila(db);
  fresh = await fingerprint(db);
  const session = await mariadbEngine
    .create('db', mariadbEngine.configSchema(z).parse({ url: urlFor(db) }), { configDir: '/tmp', stateDir: '/tmp', log: silentLogger })
    .openBackup({ repo: repo.repo, log: silentLogger, progress: () => {}, signal: new AbortController().signal, mode: 'live' });
  const artifact = await runBackup(session);
  await repo.repo.flush();
  artifactPath = `${repo.dir}/artifact.json`;
  writeFileSync(artifactPath, JSON.stringify(artifact));
  await damage();
  damaged = await fingerprint(db);
  expect(damaged.rows).not.toEqual(fresh.rows);
}, 240_000);

afterAll(async () => {
  // Also what a failed run left of a killed restore.
  await dropDb(db, ...(await leftovers(db)));
  await repo?.cleanup();
});

describe('mariadb restore killed with SIGKILL', () => {
  it('leaves the target wholly old or wholly new, at every kill point', async () => {
    // An uninterrupted restore first: how long staging takes on this machine now sets the range of
    // the kills aimed at the stage, so they land inside it on a fast machine and on a loaded one.
    const calibration = await killedRestore(Infinity, false);
    expect(calibration.result).toBe('finished');
    expect(calibration.stagedMs).toBeGreaterThan(0);
    await sessionGone();
    await damage();
    damaged = await fingerprint(db);
    const stageMs = calibration.stagedMs!;
    const outcomes: string[] = [];
    for (let i = 0; i < 6; i++) {
      const afterStaged = i % 2 === 1;
      const delay = afterStaged ? Math.floor(Math.random() * 120) : Math.floor(Math.random() * stageMs * 0.9);
      const { result } = await killedRestore(delay, afterStaged);
      // The server finishes the statement a killed client sent (a RENAME, say) before it notices the
      // client is gone; compare once that session has ended, i.e. released the restore lock.
      await sessionGone();
      // Right after the kill: the tables moved by one RENAME, so their rows are all old or all new.
      const now = await fingerprint(db);
      const tablesState = JSON.stringify(now.rows) === JSON.stringify(damaged.rows) ? 'old' : JSON.stringify(now.rows) === JSON.stringify(fresh.rows) ? 'new' : 'mixed';
      expect(tablesState, `kill ${i} (${afterStaged ? 'after staging' : 'from start'} +${delay} ms, ${result})`).not.toBe('mixed');
      await recoverInterruptedRestores({ url: urlFor(db) }, silentLogger);
      const recovered = await fingerprint(db);
      const state = JSON.stringify(recovered) === JSON.stringify(damaged) ? 'old' : JSON.stringify(recovered) === JSON.stringify(fresh) ? 'new' : 'mixed';
      expect(state, `after recovery of kill ${i}`).not.toBe('mixed');
      // Once the new tables are in, recovery only ever rolls forward.
      if (tablesState === 'new') expect(state).toBe('new');
      expect(await leftovers(db)).toEqual([]);
      outcomes.push(`${afterStaged ? 'commit' : 'stage'}+${delay}ms:${result}:${state}`);
      if (state === 'new') await damage();
      damaged = await fingerprint(db);
    }
    // At least one kill must have landed before the swap, or the test proved nothing about rollback.
    expect(outcomes.some((o) => o.endsWith(':old')), outcomes.join(' ')).toBe(true);
  });
});
