// A restore SIGKILLed at random points (and at each phase boundary) leaves the target database either
// the old one, intact and accepting connections, or the restored one; the next restore cleans up.
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sideNames } from '../../src/engines/postgresql/restore.js';
import { createTestRepo, type TestRepo } from '../helpers/repo.js';
import { compileSources } from './compile-for-child.js';
import { PG_BASE, backup, createDb, dropDb, engineFor, fingerprint, sql, uniqueDb, type Fingerprint } from './pg-fixture.js';

const CHILD = `
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { openRepository } from './src/repo/index.js';
import { FsBackend } from './src/storage/index.js';
import { postgresqlEngine } from './src/engines/postgresql/index.js';
import { runRestore } from './src/engines/engine.js';
import { createLogger } from './src/core/log.js';
const [repoDir, password, artifactFile, url, stateDir] = process.argv.slice(2);
const repo = await openRepository({ storage: new FsBackend(repoDir), password });
const artifact = JSON.parse(readFileSync(artifactFile, 'utf8'));
const log = createLogger((_l, line) => process.stdout.write(line + '\\n'), 'debug');
const engine = postgresqlEngine.create('db', postgresqlEngine.configSchema(z).parse({ url }), { configDir: stateDir, stateDir, log });
const session = await engine.openRestore({ repo, log, progress() {}, signal: new AbortController().signal, options: {} }, artifact);
await runRestore(session);
process.stdout.write('RESTORE DONE\\n');
await repo.close();
`;

const OLD_STATE = `
  CREATE TABLE items (id int PRIMARY KEY, name text);
  INSERT INTO items SELECT g, 'old ' || g FROM generate_series(1, 500) g;`;
const NEW_STATE = `
  CREATE TABLE items (id int PRIMARY KEY, name text, price numeric);
  INSERT INTO items SELECT g, 'new ' || g, g * 1.5 FROM generate_series(1, 20000) g;
  CREATE TABLE tags (item int REFERENCES items, tag text);
  INSERT INTO tags SELECT g % 20000 + 1, md5(g::text) FROM generate_series(1, 40000) g;
  CREATE INDEX tags_tag ON tags (tag);
  CREATE SEQUENCE counter; SELECT setval('counter', 77);`;

describe('postgresql engine: restore killed with SIGKILL', () => {
  const source = uniqueDb('kill_src');
  const target = uniqueDb('kill_dst');
  let store: TestRepo;
  let compiled: ReturnType<typeof compileSources>;
  let artifactFile: string;
  let oldFp: Fingerprint;
  let newFp: Fingerprint;
  const stateDir = mkdtempSync(join(tmpdir(), 'bunker-pg-kill-'));

  const resetTarget = async () => {
    await dropDb(target);
    await createDb(target);
    await sql(target, OLD_STATE);
  };

  /** Runs the restore in a child; kills its whole process group after `delayMs` or on a log line. */
  const restoreInChild = (kill: { afterMs?: number; onLine?: RegExp }) =>
    new Promise<{ killed: boolean; output: string }>((resolve, reject) => {
      const child = spawn(
        process.execPath,
        ['child.mjs', store.dir, store.password, artifactFile, `${PG_BASE}/${target}`, stateDir],
        { cwd: compiled.dir, detached: true, stdio: ['ignore', 'pipe', 'pipe'] },
      );
      let output = '';
      let killed = false;
      const killNow = () => {
        if (killed || child.exitCode !== null) return;
        killed = true;
        process.kill(-child.pid!, 'SIGKILL');
      };
      const timer = kill.afterMs !== undefined ? setTimeout(killNow, kill.afterMs) : undefined;
      child.stdout.on('data', (d: Buffer) => {
        output += d.toString();
        if (kill.onLine?.test(output)) killNow();
      });
      child.stderr.on('data', (d: Buffer) => (output += d.toString()));
      child.on('error', reject);
      child.on('close', (code) => {
        clearTimeout(timer);
        if (!killed && code !== 0) reject(new Error(`child restore failed (${code}): ${output}`));
        else resolve({ killed, output });
      });
    });

  /** The target answers and is exactly the old or exactly the new database. */
  const targetState = async (): Promise<'old' | 'new'> => {
    const fp = await fingerprint(target);
    if (JSON.stringify(fp) === JSON.stringify(oldFp)) return 'old';
    expect(fp).toEqual(newFp);
    return 'new';
  };

  beforeAll(async () => {
    compiled = compileSources(['src/engines/postgresql/index.ts', 'src/repo/index.ts', 'src/storage/index.ts']);
    writeFileSync(join(compiled.dir, 'child.mjs'), CHILD);
    store = await createTestRepo();
    await createDb(source);
    await sql(source, NEW_STATE);
    newFp = await fingerprint(source);
    const artifact = await backup(engineFor(source), store.repo);
    await store.repo.flush();
    artifactFile = join(stateDir, 'artifact.json');
    writeFileSync(artifactFile, JSON.stringify(artifact));
    await resetTarget();
    oldFp = await fingerprint(target);
  }, 300_000);

  afterAll(async () => {
    await dropDb(source);
    await dropDb(target);
    const { shadow, old } = sideNames(target);
    await dropDb(shadow);
    await dropDb(old);
    await store?.cleanup();
    compiled?.remove();
  });

  it('leaves the target old-and-intact or new at every kill point', async () => {
    // One undisturbed run measures how long a restore takes here, to spread the random kills over it.
    await resetTarget();
    const t0 = Date.now();
    const clean = await restoreInChild({});
    const fullMs = Date.now() - t0;
    expect(clean.output).toContain('RESTORE DONE');
    expect(await targetState()).toBe('new');

    type KillPlan = { onLine?: RegExp; afterMs?: number; expected?: 'old' | 'new' };
    const phases: KillPlan[] = [
      { onLine: /building .* in shadow database/, expected: 'old' },
      { onLine: /shadow database \S+ is complete/, expected: 'old' },
      { onLine: /ended \d+ connection/ },
      { onLine: /is now the restored copy/, expected: 'new' },
    ];
    const randomDelays = Array.from({ length: 4 }, () => Math.floor(Math.random() * fullMs * 1.1));
    const seen = new Set<string>();
    for (const kill of [...phases, ...randomDelays.map((afterMs): KillPlan => ({ afterMs }))]) {
      await resetTarget();
      // An application connection that the swap has to end.
      const app = new pg.Client({ connectionString: `${PG_BASE}/${target}` });
      app.on('error', () => {});
      await app.connect();
      const result = await restoreInChild(kill);
      await app.end().catch(() => {});
      const state = await targetState();
      seen.add(state);
      if (kill.onLine) expect(result.killed, `kill on ${String(kill.onLine)}`).toBe(true);
      if (result.killed && kill.expected) expect(state, `killed at ${String(kill.onLine ?? kill.afterMs)}`).toBe(kill.expected);
    }
    expect(seen).toEqual(new Set(['old', 'new']));

    // The next restore removes whatever the killed ones left behind and completes.
    const last = await restoreInChild({});
    expect(last.output).toContain('RESTORE DONE');
    expect(await targetState()).toBe('new');
    const { shadow, old } = sideNames(target);
    const left = await sql('postgres', `SELECT datname FROM pg_database WHERE datname IN ('${shadow}', '${old}')`);
    expect(left.rows).toEqual([]);
  }, 400_000);
});
