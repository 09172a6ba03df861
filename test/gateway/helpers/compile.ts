// Child processes in tests (a holder that gets SIGKILLed) need the gateway as JavaScript; vitest
// transforms TypeScript only in its own process. This transpiles src/core and src/gateway (no npm
// imports) into a temp dir, without type-checking.
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import ts from 'typescript';

const SRC = new URL('../../../src/', import.meta.url).pathname;

export function transpileGateway(outDir: string): string {
  for (const folder of ['core', 'gateway']) {
    mkdirSync(join(outDir, folder), { recursive: true });
    for (const name of readdirSync(join(SRC, folder))) {
      if (!name.endsWith('.ts') || name.endsWith('.test.ts')) continue;
      const out = ts.transpileModule(readFileSync(join(SRC, folder, name), 'utf8'), {
        compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
      });
      writeFileSync(join(outDir, folder, name.replace(/\.ts$/, '.js')), out.outputText);
    }
  }
  writeFileSync(join(outDir, 'package.json'), '{"type":"module"}\n');
  return join(outDir, 'gateway', 'index.js');
}
