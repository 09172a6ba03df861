// Bundles the command line into one module (plus chunks loaded on demand), over what tsc wrote to dist/.
//
// Why: Node loads ES modules one file at a time (resolve, read, compile), and Bunker with its
// dependencies is a few hundred files; zod alone is ~100. Unbundled, `bunker --help` spent most of
// its 0.4–0.65 s loading modules; bundled it takes ~0.3 s here, and every command starts that much
// sooner. tsc's per-file output stays in dist/ for code that imports single modules (the benches).
//
// Kept outside the bundle: packages with native parts (found at run time through node_modules) and
// pg's optional native binding.
import { build } from 'esbuild';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

await build({
  absWorkingDir: root,
  // The output sits where tsc put the same module, so paths it resolves from import.meta.url
  // (package.json, build/Release, the CLI entry the control plane spawns) stay right.
  entryPoints: { 'cli/main': 'src/cli/main.ts' },
  outdir: 'dist',
  bundle: true,
  // Modules the code imports with import() (database drivers, engines' backup and restore halves)
  // become chunks loaded when first needed, so a files backup never compiles pg or mysql2.
  splitting: true,
  chunkNames: 'chunks/[name]-[hash]',
  platform: 'node',
  format: 'esm',
  target: 'node20',
  external: ['better-sqlite3', 'zstd-napi', 'pg-native'],
  // CommonJS dependencies call require() and read __dirname, which an ES module lacks.
  banner: {
    js: [
      "import { createRequire as __bunkerCreateRequire } from 'node:module';",
      "import { fileURLToPath as __bunkerFileURLToPath } from 'node:url';",
      'const require = __bunkerCreateRequire(import.meta.url);',
      'const __filename = __bunkerFileURLToPath(import.meta.url);',
      "const __dirname = __bunkerFileURLToPath(new URL('.', import.meta.url));",
    ].join('\n'),
  },
  sourcemap: 'linked',
  logLevel: 'warning',
});
