// Placeholder until the sqlite engine lands: the type is known but refuses to run.
import { z } from 'zod';
import { BunkerError } from '../../core/errors.js';
import type { EngineDescriptor } from '../engine.js';

export const sqliteEngine: EngineDescriptor<Record<string, unknown>> = {
  type: 'sqlite',
  kind: 'service',
  configSchema: z.record(z.string(), z.unknown()),
  create() {
    throw new BunkerError('engine_unavailable', 'the sqlite engine is not built yet');
  },
};
