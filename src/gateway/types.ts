// The contract between the control plane (safe backups and restores) and the request-holding gateway.
import type { Logger } from '../core/log.js';

export interface GatewaySpec {
  environment: string;
  /** host:port the gateway listens on (the address the application's clients use). */
  listen: string;
  /** URL of the application behind the gateway. */
  upstream: string;
}

export interface HoldReport {
  /** From the moment new requests stopped being forwarded to the moment they flowed again. */
  pauseMs: number;
  /** Requests that waited during the hold (and were then forwarded). */
  heldRequests: number;
  /** Requests turned away with 503 + Retry-After because the held queue was full. */
  rejectedRequests: number;
  /** Time from the hold's start until in-flight requests had finished (part of pauseMs). */
  drainMs?: number;
  /** Clients that gave up while their request was held (it was never forwarded). */
  abandonedRequests?: number;
}

/** Traffic is held until release() is called, or the hold timeout passes (the gateway then releases by itself). */
export interface TrafficHold {
  release(): Promise<HoldReport>;
}

export interface HoldOptions {
  stateDir: string;
  environment: string;
  /** The gateway releases by itself after this long, even if the holder died (default 30 s). */
  timeoutMs?: number;
  /** How long to wait for in-flight requests to finish before the hold counts as established. */
  drainTimeoutMs?: number;
  log: Logger;
}

export interface RunningGateways {
  /** Actual listening addresses by environment (useful when listen used port 0). */
  addresses: Record<string, string>;
  close(): Promise<void>;
}

export interface GatewayOptions {
  stateDir: string;
  log: Logger;
  /** Bound of the held queue per environment; past it requests get 503 with Retry-After. */
  maxHeldRequests?: number;
  /** How long a request that never reached the application (connection refused) keeps being retried (default 10 s). */
  upstreamRetryMs?: number;
}
