// Compiles the engine, repository and storage sources to plain JS in a temp dir, so a test can run a
// restore in a child process that it may SIGKILL (vitest only transforms TypeScript in its workers).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const ROOT = resolve(import.meta.dirname, '..', '..');

export function compileSources(entries: string[]): { dir: string; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), 'bunker-pg-child-'));
  execFileSync(
    process.execPath,
    [
      join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'),
      '--outDir', join(dir, 'src'), '--rootDir', join(ROOT, 'src'),
      '--module', 'nodenext', '--moduleResolution', 'nodenext', '--target', 'es2022',
      '--esModuleInterop', '--skipLibCheck', '--types', 'node', '--noCheck',
      ...entries.map((e) => join(ROOT, e)),
    ],
    { stdio: 'inherit' },
  );
  // The native addons are found beside the node_modules that packages resolve through
  // (src/core/native-addon.ts), so this one link serves both.
  symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'));
  writeFileSync(join(dir, 'package.json'), '{ "type": "module" }\n');
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}
