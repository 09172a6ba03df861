// gateway: the reverse proxy that holds (never drops) requests while a safe backup takes its consistent
// point, and the control channel through which backups and restores ask it to hold and release.
import { BunkerError } from '../core/errors.js';
import { redactUrl } from '../core/redact.js';
import { controlSocketPath, queryStatus, requestHold, serveControl, type ControlServer } from './control.js';
import { HoldingProxy, type ProxyStats } from './proxy.js';
import type { GatewayOptions, GatewaySpec, HoldOptions, RunningGateways, TrafficHold } from './types.js';

export type * from './types.js';
export type { ProxyStats } from './proxy.js';
export { controlSocketPath } from './control.js';

export const DEFAULT_HOLD_TIMEOUT_MS = 30_000;
export const DEFAULT_DRAIN_TIMEOUT_MS = 10_000;
export const DEFAULT_MAX_HELD_REQUESTS = 10_000;
export const DEFAULT_UPSTREAM_RETRY_MS = 10_000;

/** Splits "host:port", "[v6]:port", ":port" or "port" (the last two listen on every interface). */
export function parseListen(listen: string): { host: string | undefined; port: number } {
  const m = /^(?:(?:\[([^\]]+)\]|([^:[\]]*)):)?(\d{1,5})$/.exec(listen.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) {
    throw new BunkerError('config_invalid', `gateway.listen "${listen}" is not an address`, {
      hint: 'Write host:port, e.g. 127.0.0.1:8080 (port 0 picks a free port).',
    });
  }
  const host = m[1] ?? m[2];
  return { host: host ? host : undefined, port };
}

function parseUpstream(spec: GatewaySpec): URL {
  let url: URL;
  try {
    url = new URL(spec.upstream);
  } catch {
    url = new URL('invalid:');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new BunkerError('config_invalid', `gateway.upstream "${redactUrl(spec.upstream)}" of environment "${spec.environment}" is not an http(s) URL`, {
      hint: 'Write the application\'s address, e.g. http://127.0.0.1:3000.',
    });
  }
  return url;
}

/** Starts one proxy per spec; a control channel in stateDir lets holdTraffic() reach it. */
export async function startGateways(specs: GatewaySpec[], options: GatewayOptions): Promise<RunningGateways> {
  const seen = new Set<string>();
  for (const spec of specs) {
    if (seen.has(spec.environment)) {
      throw new BunkerError('config_invalid', `environment "${spec.environment}" has two gateways`, { hint: 'Give each environment one gateway.' });
    }
    seen.add(spec.environment);
    parseListen(spec.listen);
    parseUpstream(spec);
  }

  const proxies: HoldingProxy[] = [];
  const controls: ControlServer[] = [];
  const addresses: Record<string, string> = {};
  const closeAll = async () => {
    await Promise.all(controls.map((c) => c.close()));
    await Promise.all(proxies.map((p) => p.close()));
  };
  try {
    for (const spec of specs) {
      const proxy = new HoldingProxy({
        environment: spec.environment,
        upstream: parseUpstream(spec),
        log: options.log,
        maxHeldRequests: options.maxHeldRequests ?? DEFAULT_MAX_HELD_REQUESTS,
        upstreamRetryMs: options.upstreamRetryMs ?? DEFAULT_UPSTREAM_RETRY_MS,
      });
      // The control socket first: it refuses to start when this environment's gateway already runs.
      controls.push(await serveControl(proxy, controlSocketPath(options.stateDir, spec.environment), options.log));
      proxies.push(proxy);
      const { host, port } = parseListen(spec.listen);
      addresses[spec.environment] = await proxy.listen(host, port);
      options.log.info(`gateway ${spec.environment}: ${addresses[spec.environment]} -> ${redactUrl(spec.upstream)}`);
    }
  } catch (err) {
    await closeAll();
    throw err;
  }
  let closing: Promise<void> | null = null;
  return { addresses, close: () => (closing ??= closeAll()) };
}

/**
 * Asks the environment's running gateway to hold new requests and drain in-flight ones. Resolves once
 * traffic is held, or with null when no gateway is running for the environment (writes are then not held).
 * release() rejects with a `timeout` BunkerError when the hold timeout already released traffic.
 */
export async function holdTraffic(options: HoldOptions): Promise<TrafficHold | null> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_HOLD_TIMEOUT_MS;
  const drainTimeoutMs = Math.min(options.drainTimeoutMs ?? DEFAULT_DRAIN_TIMEOUT_MS, timeoutMs);
  const held = await requestHold({
    path: controlSocketPath(options.stateDir, options.environment),
    environment: options.environment,
    timeoutMs,
    drainTimeoutMs,
    log: options.log,
  });
  if (!held) {
    options.log.info(`no gateway runs for environment "${options.environment}": application writes are not held`);
    return null;
  }
  return { release: () => held.release() };
}

/** The running gateway's counters for an environment, or null when none runs. */
export function gatewayStatus(stateDir: string, environment: string): Promise<ProxyStats | null> {
  return queryStatus(controlSocketPath(stateDir, environment));
}
