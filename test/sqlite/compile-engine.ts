// Compiles an engine's sources to plain JS in a temp dir, so a test can run it in a child process it
// may SIGKILL (vitest transforms TypeScript only inside its own workers).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const ROOT = resolve(import.meta.dirname, '..', '..');

/** Returns the folder that mirrors src/ (e.g. <dir>/engines/sqlite/index.js) and a cleanup. */
export function compileForChild(entry: string): { srcDir: string; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), 'bunker-compiled-'));
  const srcDir = join(dir, 'src');
  execFileSync(
    process.execPath,
    [
      join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'),
      '--outDir', srcDir, '--rootDir', join(ROOT, 'src'),
      '--module', 'nodenext', '--moduleResolution', 'nodenext', '--target', 'es2022',
      '--esModuleInterop', '--skipLibCheck', '--types', 'node', '--noCheck',
      join(ROOT, entry),
    ],
    { stdio: 'inherit' },
  );
  // The compiled files resolve packages (better-sqlite3, zod) through the project's node_modules.
  symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'));
  writeFileSync(join(dir, 'package.json'), '{ "type": "module" }\n');
  return { srcDir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}
