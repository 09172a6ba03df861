// Runs the real bin/bunker (the built CLI) in a temporary project folder, as a user would: no TTY,
// the fast KDF, a password in the environment. ensureBuilt() rebuilds dist/ once when src/ is newer.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchEnv, NODE_FLAGS } from '../../src/core/node-flags.js';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const BIN = join(ROOT, 'bin', 'bunker');

function newestMtime(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestMtime(path));
    else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.test.ts')) newest = Math.max(newest, statSync(path).mtimeMs);
  }
  return newest;
}

/** Builds dist/ when any source is newer than the built CLI (a lock keeps parallel test files from racing). */
export function ensureBuilt(): void {
  const built = join(ROOT, 'dist', 'cli', 'main.js');
  const stale = () => !existsSync(built) || statSync(built).mtimeMs < newestMtime(join(ROOT, 'src'));
  if (!stale()) return;
  const lock = join(ROOT, 'dist', '.e2e-build-lock');
  mkdirSync(join(ROOT, 'dist'), { recursive: true });
  for (let i = 0; i < 600; i++) {
    try {
      mkdirSync(lock);
      break;
    } catch {
      if (Date.now() - statSync(lock).mtimeMs > 120_000) rmSync(lock, { recursive: true, force: true });
      spawnSync('sleep', ['0.2']);
    }
  }
  try {
    // As `npm run build` does, except that compile errors elsewhere in the tree still emit.
    if (stale()) {
      spawnSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: ROOT, stdio: 'ignore' });
      spawnSync(process.execPath, ['scripts/bundle.mjs'], { cwd: ROOT, stdio: 'ignore' });
    }
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
  if (!existsSync(built)) throw new Error('npm run build did not produce dist/cli/main.js');
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  env?: Record<string, string | undefined>;
  cwd?: string;
  input?: string;
  timeoutMs?: number;
}

export class CliProject {
  readonly dir: string;
  readonly password = 'e2e-password-' + Math.random().toString(36).slice(2, 10);

  constructor(prefix = 'bunker-e2e-') {
    this.dir = mkdtempSync(join(tmpdir(), prefix));
  }

  get configPath(): string {
    return join(this.dir, 'bunker.yaml');
  }

  writeConfig(yaml: string): void {
    writeFileSync(this.configPath, yaml);
  }

  write(path: string, content: string | Buffer): void {
    const file = join(this.dir, path);
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, content);
  }

  path(...parts: string[]): string {
    return join(this.dir, ...parts);
  }

  env(extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      BUNKER_PASSWORD: this.password,
      BUNKER_INSECURE_FAST_KDF: '1',
      BUNKER_CONFIG: undefined,
      BUNKER_PASSWORD_FILE: undefined,
      BUNKER_DEBUG: undefined,
      ...extra,
    };
    for (const key of Object.keys(env)) if (env[key] === undefined) delete env[key];
    return env;
  }

  /** Runs bunker to completion. */
  run(args: string[], options: RunOptions = {}): Promise<RunResult> {
    return new Promise((resolvePromise, reject) => {
      const child = this.spawn(args, options);
      let stdout = '';
      let stderr = '';
      child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
      const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 60_000);
      child.on('error', reject);
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        resolvePromise({ code: code ?? (signal ? 128 : -1), stdout, stderr });
      });
      child.stdin!.end(options.input ?? '');
    });
  }

  /** Starts bunker without waiting (for concurrency and kill tests), as bin/bunker's first line starts node. */
  spawn(args: string[], options: RunOptions = {}): ChildProcess {
    const env = this.env(options.env);
    return spawn(process.execPath, [...NODE_FLAGS, BIN, ...args], {
      cwd: options.cwd ?? this.dir,
      env: { ...env, ...launchEnv(env) },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
  }

  /** Runs bunker and fails the test with its output unless it exits 0. */
  async ok(args: string[], options: RunOptions = {}): Promise<RunResult> {
    const result = await this.run(args, options);
    if (result.code !== 0) {
      throw new Error(`bunker ${args.join(' ')} exited ${result.code}\nstdout: ${result.stdout}\nstderr: ${result.stderr}`);
    }
    return result;
  }

  cleanup(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export interface EnvExtras {
  /** Extra service entries (indented six spaces). */
  services?: string;
  /** Extra environment keys such as hooks (indented four spaces). */
  keys?: string;
}

/** A project with `main` and `staging`, each an SQLite service `app` and a files mount `uploads`. */
export function twoEnvironmentConfig(extra: { main?: EnvExtras; staging?: EnvExtras; top?: string } = {}): string {
  const env = (name: string, type: string, x: EnvExtras = {}) => `  ${name}:
    type: ${type}
    services:
      app: { type: sqlite, path: ${name}/app.sqlite }
${x.services ?? ''}    mounts:
      uploads: { path: ${name}/uploads }
${x.keys ?? ''}`;
  return `project: e2e\n${extra.top ?? ''}environments:\n${env('main', 'production', extra.main)}${env('staging', 'staging', extra.staging)}`;
}
