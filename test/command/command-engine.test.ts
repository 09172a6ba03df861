// command engine: real tools (cat, tar, gzip, sqlite3) through a real repository, and every way a
// command can fail.
import { z } from 'zod';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isBunkerError } from '../../src/core/errors.js';
import { createLogger, silentLogger, type Logger } from '../../src/core/log.js';
import { runBackup, runRestore, type EngineEnv } from '../../src/engines/engine.js';
import { commandEngine, type CommandConfig } from '../../src/engines/command/index.js';
import type { ServiceArtifact } from '../../src/repo/types.js';
import { createTestRepo, type TestRepo } from '../helpers/repo.js';

let root: string;
let testRepo: TestRepo;
beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'bunker-command-'));
  testRepo = await createTestRepo();
});
afterAll(async () => {
  await testRepo?.cleanup();
  rmSync(root, { recursive: true, force: true });
});

function envDir(name: string): EngineEnv {
  const configDir = join(root, name);
  mkdirSync(configDir, { recursive: true });
  return { configDir, stateDir: join(configDir, '.bunker'), log: silentLogger };
}

async function backup(env: EngineEnv, config: CommandConfig, signal = new AbortController().signal): Promise<ServiceArtifact> {
  const engine = commandEngine.create('svc', commandEngine.configSchema(z).parse(config), env);
  return runBackup(await engine.openBackup({ repo: testRepo.repo, log: env.log, progress: () => {}, signal, mode: 'live' }));
}

async function restore(env: EngineEnv, config: CommandConfig, artifact: ServiceArtifact, log: Logger = silentLogger): Promise<void> {
  const engine = commandEngine.create('svc', commandEngine.configSchema(z).parse(config), env);
  await runRestore(await engine.openRestore({ repo: testRepo.repo, log, progress: () => {}, signal: new AbortController().signal, options: {} }, artifact));
}

const sha = (data: Buffer) => createHash('sha256').update(data).digest('hex');

async function failure(promise: Promise<unknown>): Promise<Error & { code: string; hint?: string }> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(isBunkerError(err), `expected a BunkerError, got ${String(err)}`).toBe(true);
  return err as Error & { code: string };
}

/** False for a process that is gone or a zombie (exited, not yet reaped by an init that may never reap it). */
function isRunning(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

const NO_RESTORE = 'cat > /dev/null';

describe('command engine round trips', () => {
  it('cat: the restore command receives exactly the bytes the backup command wrote', async () => {
    const main = envDir('cat-main');
    const blob = randomBytes(12 * 1024 * 1024 + 17);
    writeFileSync(join(main.configDir, 'blob.bin'), blob);
    const artifact = await backup(main, { backup: 'cat blob.bin', restore: NO_RESTORE });
    expect(artifact).toMatchObject({ engine: 'command', size: blob.length });
    expect(artifact.warnings.join(' ')).toMatch(/point-in-time only if the backup command itself is/);
    expect(artifact.warnings.join(' ')).toMatch(/partly restored/);
    expect(sha(await testRepo.repo.readBuffer(artifact.streams.data!))).toBe(sha(blob));

    const staging = envDir('cat-staging');
    await restore(staging, { backup: 'cat blob.bin', restore: 'cat > restored.bin' }, artifact);
    expect(sha(readFileSync(join(staging.configDir, 'restored.bin')))).toBe(sha(blob));
  });

  it('tar + gzip: a folder round trip into another environment, file by file', async () => {
    const main = envDir('tar-main');
    const files: Record<string, Buffer> = {
      'a.txt': Buffer.from('hello\n'),
      'sub/b.bin': randomBytes(300_000),
      'sub/deeper/c': Buffer.alloc(0),
    };
    for (const [name, data] of Object.entries(files)) {
      mkdirSync(join(main.configDir, 'data', name, '..'), { recursive: true });
      writeFileSync(join(main.configDir, 'data', name), data);
    }
    const config = { backup: 'tar -C data -cf - . | gzip -c', restore: 'mkdir -p data && gunzip -c | tar -C data -xf -' };
    const artifact = await backup(main, config);
    const staging = envDir('tar-staging');
    await restore(staging, config, artifact);
    for (const [name, data] of Object.entries(files)) expect(readFileSync(join(staging.configDir, 'data', name)).equals(data)).toBe(true);
  });

  it('sqlite3 CLI: .dump and reload give equal content', async () => {
    const main = envDir('sqlite3-main');
    const db = new Database(join(main.configDir, 'app.db'));
    db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, n REAL)');
    const insert = db.prepare('INSERT INTO t (name, n) VALUES (?, ?)');
    db.transaction(() => {
      for (let i = 0; i < 2000; i++) insert.run(`row ${i} ' "quoted"`, i / 7);
    })();
    db.close();
    const config = { backup: 'sqlite3 app.db .dump', restore: 'rm -f app.db && sqlite3 app.db' };
    const artifact = await backup(main, config);
    const staging = envDir('sqlite3-staging');
    await restore(staging, config, artifact);
    const rows = (dir: string) => {
      const d = new Database(join(dir, 'app.db'), { readonly: true });
      const all = d.prepare('SELECT * FROM t ORDER BY id').all();
      d.close();
      return JSON.stringify(all);
    };
    expect(sha(Buffer.from(rows(staging.configDir)))).toBe(sha(Buffer.from(rows(main.configDir))));
  });

  it('runs commands in the folder of bunker.yaml with BUNKER_SERVICE set', async () => {
    const main = envDir('cwd');
    const artifact = await backup(main, { backup: 'pwd; echo "$BUNKER_SERVICE $BUNKER_PHASE"', restore: NO_RESTORE, shell: '/bin/bash' });
    expect((await testRepo.repo.readBuffer(artifact.streams.data!)).toString()).toBe(`${main.configDir}\nsvc backup\n`);
    const probe = await commandEngine.create('svc', { backup: 'x', restore: 'y', shell: '/bin/bash' }, main).probe();
    expect(probe.version).toBe('command (/bin/bash)');
  });
});

describe('command engine failures', () => {
  it('a failing backup command: status and the redacted tail of stderr in the error', async () => {
    const env = envDir('fail-backup');
    const err = await failure(
      backup(env, {
        backup: 'echo partial; for i in $(seq 1 300); do echo "noise line $i" >&2; done; echo "could not connect to postgresql://admin:hunter22@db.internal/shop (password=hunter22)" >&2; exit 3',
        restore: NO_RESTORE,
      }),
    );
    expect(err.code).toBe('engine');
    expect(err.message).toMatch(/backup command of service "svc" exited with status 3/);
    expect(err.message).toMatch(/could not connect to postgresql:\/\/admin:\*\*\*@db\.internal/);
    expect(err.message).not.toMatch(/hunter22/);
    expect(err.message).not.toMatch(/noise line 1\n/); // only the tail
    expect(err.message.length).toBeLessThan(5000);
  });

  it('a backup command that hangs is stopped at its timeout, with everything it started', async () => {
    const env = envDir('timeout');
    const started = Date.now();
    const err = await failure(backup(env, { backup: 'sleep 60 & echo $! > child.pid; wait', restore: NO_RESTORE, timeout: '400ms' }));
    expect(err.code).toBe('timeout');
    expect(err.message).toMatch(/longer than its limit \(0\.4 s\)/);
    expect(Date.now() - started).toBeLessThan(10_000);
    const pid = Number(readFileSync(join(env.configDir, 'child.pid'), 'utf8'));
    await sleep(100);
    expect(isRunning(pid)).toBe(false); // the grandchild is gone too
  });

  it('cancellation stops the backup command', async () => {
    const env = envDir('abort');
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 300);
    const err = await failure(backup(env, { backup: 'while true; do echo data; sleep 0.05; done', restore: NO_RESTORE }, controller.signal));
    expect(err.code).toBe('aborted');
  });

  it('a failing restore command says the service may be partly restored', async () => {
    const main = envDir('fail-restore');
    const artifact = await backup(main, { backup: 'head -c 3000000 /dev/zero', restore: NO_RESTORE });
    const err = await failure(restore(main, { backup: 'true', restore: 'cat > /dev/null; echo "load failed: duplicate key" >&2; exit 4' }, artifact));
    expect(err.message).toMatch(/restore command of service "svc" exited with status 4; the service may be partly restored/);
    expect(err.message).toMatch(/duplicate key/);
    // A command that gives up without reading its input fails the same way.
    const early = await failure(restore(main, { backup: 'true', restore: 'echo "no such database" >&2; exit 5' }, artifact));
    expect(early.message).toMatch(/status 5.*\n.*no such database/s);
  });

  it('a restore command that exits 0 without reading everything succeeds with a warning', async () => {
    const main = envDir('early-exit');
    const artifact = await backup(main, { backup: 'head -c 5000000 /dev/zero', restore: NO_RESTORE });
    const warnings: string[] = [];
    const log = createLogger((level, line) => level === 'warn' && warnings.push(line), 'warn');
    await restore(main, { backup: 'true', restore: 'head -c 10 > /dev/null' }, artifact, log);
    expect(warnings.some((w) => /exited with status 0 before reading all 5000000 bytes/.test(w))).toBe(true);
  });

  it('a missing shell or folder gets a clear error', async () => {
    const env = envDir('no-shell');
    const engine = commandEngine.create('svc', { backup: 'true', restore: 'true', shell: '/nonexistent/sh' }, env);
    const err = await failure(engine.probe());
    expect(err.message).toMatch(/could not start: shell \/nonexistent\/sh or folder .* not found/);
    const gone = { ...envDir('gone'), configDir: join(root, 'does-not-exist') };
    const err2 = await failure(backup(gone, { backup: 'true', restore: 'true' }));
    expect(err2.message).toMatch(/folder .*does-not-exist does not exist/);
  });

  it('refuses another engine\'s backup or an unknown format before running anything', async () => {
    const env = envDir('mismatch');
    const artifact = await backup(env, { backup: 'echo hi', restore: NO_RESTORE });
    const config = { backup: 'true', restore: 'cat > ran.txt' };
    expect((await failure(restore(env, config, { ...artifact, engine: 'sqlite' }))).code).toBe('target_mismatch');
    expect((await failure(restore(env, config, { ...artifact, format: 7 }))).code).toBe('not_restorable');
    expect(existsSync(join(env.configDir, 'ran.txt'))).toBe(false);
  });

  it('a damaged backup fails in stage(), before the restore command runs', async () => {
    const env = envDir('damaged');
    const artifact = await backup(env, { backup: 'head -c 100000 /dev/urandom', restore: NO_RESTORE });
    const ref = artifact.streams.data!;
    const short = { ...artifact, streams: { data: { ...ref, size: ref.size + 1 } } };
    const err = await failure(restore(env, { backup: 'true', restore: 'cat > ran.txt' }, short));
    expect(err.code).toBe('corrupt');
    expect(existsSync(join(env.configDir, 'ran.txt'))).toBe(false);
  });

  it('an empty dump is stored with a warning', async () => {
    const artifact = await backup(envDir('empty'), { backup: 'true', restore: NO_RESTORE });
    expect(artifact.size).toBe(0);
    expect(artifact.warnings).toContain('command service: the backup command wrote nothing to stdout');
  });

  it('validates its configuration', () => {
    const parse = (c: unknown) => commandEngine.configSchema(z).safeParse(c).success;
    expect(parse({ backup: 'a', restore: 'b' })).toBe(true);
    expect(parse({ backup: 'a', restore: 'b', timeout: 30 })).toBe(true);
    expect(parse({ backup: 'a', restore: 'b', timeout: '2h' })).toBe(true);
    expect(parse({ backup: 'a' })).toBe(false);
    expect(parse({ backup: '  ', restore: 'b' })).toBe(false);
    expect(parse({ backup: 'a', restore: 'b', timeout: 'soon' })).toBe(false);
    expect(parse({ backup: 'a', restore: 'b', timeout: -1 })).toBe(false);
    expect(parse({ backup: 'a', restore: 'b', path: 'x' })).toBe(false);
  });
});

it('leaves no files behind in the folder or state dir', () => {
  expect(readdirSync(join(root, 'cat-main')).sort()).toEqual(['blob.bin']);
});
