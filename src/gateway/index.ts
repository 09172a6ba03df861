// gateway: the reverse proxy that holds (never drops) requests while a safe backup takes its consistent point.
// Placeholder until the gateway lands: no gateway is ever running, so holds report "not held".
import type { GatewayOptions, GatewaySpec, HoldOptions, RunningGateways, TrafficHold } from './types.js';
import { BunkerError } from '../core/errors.js';

export type * from './types.js';

/** Starts one proxy per spec; a control channel in stateDir lets holdTraffic() reach it. */
export async function startGateways(_specs: GatewaySpec[], _options: GatewayOptions): Promise<RunningGateways> {
  throw new BunkerError('engine_unavailable', 'the gateway is not built yet');
}

/**
 * Asks the environment's running gateway to hold new requests and drain in-flight ones. Resolves once
 * traffic is held, or with null when no gateway is running for the environment (writes are then not held).
 */
export async function holdTraffic(_options: HoldOptions): Promise<TrafficHold | null> {
  return null;
}
