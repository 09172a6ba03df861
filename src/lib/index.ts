// The library entry: what a program embedding Bunker imports (the benches do), as one module.
// `npm run build` bundles it into dist/lib/index.js, like the CLI (see scripts/bundle.mjs).
export * from '../core/index.js';
export * from '../storage/index.js';
export * from '../repo/index.js';
export * from '../engines/index.js';
export { filesEngine } from '../engines/files/index.js';
export { postgresqlEngine } from '../engines/postgresql/index.js';
export { mariadbEngine } from '../engines/mariadb/index.js';
export { redisEngine } from '../engines/redis/index.js';
export { sqliteEngine } from '../engines/sqlite/index.js';
export { commandEngine } from '../engines/command/index.js';
