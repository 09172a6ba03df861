// Engines by `type`. Each engine folder exports one descriptor; adding a service type is one line here.
import { BunkerError } from '../core/errors.js';
import type { EngineDescriptor } from './engine.js';
import { commandEngine } from './command/index.js';
import { filesEngine } from './files/index.js';
import { mariadbEngine } from './mariadb/index.js';
import { postgresqlEngine } from './postgresql/index.js';
import { redisEngine } from './redis/index.js';
import { sqliteEngine } from './sqlite/index.js';

export const ENGINES: readonly EngineDescriptor<any>[] = [
  filesEngine,
  sqliteEngine,
  commandEngine,
  postgresqlEngine,
  mariadbEngine,
  redisEngine,
];

export function findEngine(type: string): EngineDescriptor<any> | undefined {
  return ENGINES.find((e) => e.type === type || e.aliases?.includes(type));
}

export function getEngine(type: string): EngineDescriptor<any> {
  const engine = findEngine(type);
  if (!engine) {
    const known = ENGINES.map((e) => e.type).join(', ');
    throw new BunkerError('engine_unavailable', `unknown service type "${type}"`, { hint: `Use one of: ${known}.` });
  }
  return engine;
}
