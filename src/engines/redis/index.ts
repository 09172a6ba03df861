// Placeholder until the redis engine lands: the type is known but refuses to run.
import { z } from 'zod';
import { BunkerError } from '../../core/errors.js';
import type { EngineDescriptor } from '../engine.js';

export const redisEngine: EngineDescriptor<Record<string, unknown>> = {
  type: 'redis',
  kind: 'service',
  configSchema: z.record(z.string(), z.unknown()),
  create() {
    throw new BunkerError('engine_unavailable', 'the redis engine is not built yet');
  },
};
