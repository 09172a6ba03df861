// Placeholder until the command engine lands: the type is known but refuses to run.
import { z } from 'zod';
import { BunkerError } from '../../core/errors.js';
import type { EngineDescriptor } from '../engine.js';

export const commandEngine: EngineDescriptor<Record<string, unknown>> = {
  type: 'command',
  kind: 'service',
  configSchema: z.record(z.string(), z.unknown()),
  create() {
    throw new BunkerError('engine_unavailable', 'the command engine is not built yet');
  },
};
