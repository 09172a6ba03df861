// Placeholder until the mariadb engine lands: the type is known but refuses to run.
import { z } from 'zod';
import { BunkerError } from '../../core/errors.js';
import type { EngineDescriptor } from '../engine.js';

export const mariadbEngine: EngineDescriptor<Record<string, unknown>> = {
  type: 'mariadb',
  kind: 'service',
  configSchema: z.record(z.string(), z.unknown()),
  create() {
    throw new BunkerError('engine_unavailable', 'the mariadb engine is not built yet');
  },
};
