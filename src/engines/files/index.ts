// Placeholder until the files engine lands: the type is known but refuses to run.
import { z } from 'zod';
import { BunkerError } from '../../core/errors.js';
import type { EngineDescriptor } from '../engine.js';

export const filesEngine: EngineDescriptor<Record<string, unknown>> = {
  type: 'files',
  kind: 'mount',
  configSchema: z.record(z.string(), z.unknown()),
  create() {
    throw new BunkerError('engine_unavailable', 'the files engine is not built yet');
  },
};
