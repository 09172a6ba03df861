// Loads one of Bunker's C addons (build/Release/*.node, built by `npm ci` from the root binding.gyp).
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BunkerError, type ErrorCode } from './errors.js';

/**
 * The addon lives in the package's build/ folder. Modules find it from their own location first
 * (src/ and dist/ sit beside build/); code compiled elsewhere that resolves packages through the
 * project's node_modules (tests' child processes) finds it beside that node_modules instead.
 */
export function loadNativeAddon<T>(file: string, what: string, code: ErrorCode = 'internal'): T {
  const require = createRequire(import.meta.url);
  const packageRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
  const candidates = [join(packageRoot, 'build', 'Release', file)];
  try {
    const viaModules = dirname(require.resolve('zstd-napi/package.json'));
    candidates.push(join(viaModules, '..', '..', 'build', 'Release', file));
  } catch {
    // no node_modules to go by: the first candidate is the only one
  }
  const path = candidates.find((p) => existsSync(p));
  if (!path) {
    throw new BunkerError(code, `${what} (build/Release/${file}) is not built`, {
      hint: 'Run `npm ci` in the Bunker folder; it needs a C compiler and Node headers.',
      details: { looked: candidates.join(', ') },
    });
  }
  return require(path) as T;
}
