// Placeholder until the postgresql engine lands: the type is known but refuses to run.
import { z } from 'zod';
import { BunkerError } from '../../core/errors.js';
import type { EngineDescriptor } from '../engine.js';

export const postgresqlEngine: EngineDescriptor<Record<string, unknown>> = {
  type: 'postgresql',
  kind: 'service',
  configSchema: z.record(z.string(), z.unknown()),
  create() {
    throw new BunkerError('engine_unavailable', 'the postgresql engine is not built yet');
  },
};
