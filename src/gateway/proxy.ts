// One environment's reverse proxy. It streams requests and responses (never buffers bodies), keeps
// connections alive on both sides, tunnels WebSocket upgrades, and can hold traffic: while held, new
// requests wait in a bounded queue (past the bound: 503 + Retry-After) and in-flight ones drain, so a
// backup can take every service's consistent point while no request is half done.
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { performance } from 'node:perf_hooks';
import { BunkerError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { redactUrl } from '../core/redact.js';
import { addForwardedHeaders, endToEndHeaders, rawResponseHead } from './headers.js';
import type { HoldReport } from './types.js';

export interface ProxyOptions {
  environment: string;
  upstream: URL;
  log: Logger;
  maxHeldRequests: number;
  /** How long a request that never reached the upstream (connection refused) keeps being retried. */
  upstreamRetryMs: number;
}

export interface HoldRequest {
  /** The proxy releases by itself after this long. */
  timeoutMs: number;
  /** In-flight requests get this long to finish; past it the hold fails and traffic is released. */
  drainTimeoutMs: number;
  /** Called when the hold timeout released traffic (the holder's consistent point is then void). */
  onExpired?: (report: HoldReport) => void;
}

export interface ProxyStats {
  holding: boolean;
  inFlight: number;
  queued: number;
  tunnels: number;
  forwarded: number;
  held: number;
  rejected: number;
  upstreamErrors: number;
}

interface Waiting {
  start(): void;
}

interface ActiveHold {
  startedAt: number;
  drainMs: number;
  queue: Waiting[];
  /** Requests that arrived during the hold and were queued (some may leave before release). */
  queuedTotal: number;
  abandoned: number;
  rejected: number;
  timer: NodeJS.Timeout;
  onExpired: ((report: HoldReport) => void) | undefined;
}

// Methods that may be re-sent when a reused keep-alive connection turns out to be closed.
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE']);

/** A bidirectional byte pipe for an upgraded connection; the client's side pauses while traffic is held. */
class Tunnel {
  private held = false;

  constructor(
    private readonly client: Duplex,
    private readonly upstream: Duplex,
    onClose: () => void,
  ) {
    client.on('data', (d: Buffer) => {
      if (!upstream.write(d)) client.pause();
    });
    upstream.on('drain', () => {
      if (!this.held) client.resume();
    });
    upstream.on('data', (d: Buffer) => {
      if (!client.write(d)) upstream.pause();
    });
    client.on('drain', () => upstream.resume());
    client.on('end', () => upstream.end());
    upstream.on('end', () => client.end());
    let closed = false;
    const close = () => {
      if (closed) return;
      closed = true;
      client.destroy();
      upstream.destroy();
      onClose();
    };
    client.on('close', close);
    upstream.on('close', close);
    client.on('error', close);
    upstream.on('error', close);
  }

  pauseClient(): void {
    this.held = true;
    this.client.pause();
  }

  resumeClient(): void {
    this.held = false;
    this.client.resume();
  }

  destroy(): void {
    this.client.destroy();
    this.upstream.destroy();
  }
}

export class HoldingProxy {
  private readonly server: http.Server;
  private readonly agent: http.Agent;
  private readonly requestFn: typeof http.request;
  private readonly tunnels = new Set<Tunnel>();
  private active: ActiveHold | null = null;
  private inFlight = 0;
  private drainWaiter: ((drained: boolean) => void) | null = null;
  private readonly totals = { forwarded: 0, held: 0, rejected: 0, upstreamErrors: 0 };

  constructor(private readonly options: ProxyOptions) {
    const secure = options.upstream.protocol === 'https:';
    this.requestFn = secure ? https.request : http.request;
    const agentOptions = { keepAlive: true, maxSockets: Infinity, maxFreeSockets: 256, scheduling: 'lifo' as const };
    this.agent = secure ? new https.Agent(agentOptions) : new http.Agent(agentOptions);
    this.server = http.createServer({ noDelay: true, keepAlive: true }, (req, res) => this.onRequest(req, res));
    // Longer than typical client idle times, so clients rarely race a closing keep-alive connection.
    this.server.keepAliveTimeout = 65_000;
    this.server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => this.onUpgrade(req, socket, head));
    this.server.on('clientError', (_err, socket: Duplex) => {
      if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
      else socket.destroy();
    });
  }

  get environment(): string {
    return this.options.environment;
  }

  get holding(): boolean {
    return this.active !== null;
  }

  /** Listens and returns the actual address as host:port. */
  async listen(host: string | undefined, port: number): Promise<string> {
    await new Promise<void>((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException) => {
        const where = `${host ?? '*'}:${port}`;
        reject(
          err.code === 'EADDRINUSE'
            ? new BunkerError('locked', `the gateway of environment "${this.environment}" cannot listen on ${where}: the address is in use`, {
                hint: 'Stop the process that listens there (another gateway?) or change gateway.listen in bunker.yaml.',
                cause: err,
              })
            : new BunkerError('config_invalid', `the gateway of environment "${this.environment}" cannot listen on ${where}: ${err.message}`, {
                hint: 'Check gateway.listen in bunker.yaml.',
                cause: err,
              }),
        );
      };
      this.server.once('error', onError);
      this.server.listen(port, host, () => {
        this.server.off('error', onError);
        resolve();
      });
    });
    const addr = this.server.address() as AddressInfo;
    return addr.family === 'IPv6' ? `[${addr.address}]:${addr.port}` : `${addr.address}:${addr.port}`;
  }

  stats(): ProxyStats {
    return {
      holding: this.holding,
      inFlight: this.inFlight,
      queued: this.active?.queue.length ?? 0,
      tunnels: this.tunnels.size,
      ...this.totals,
    };
  }

  /**
   * Stops forwarding new requests and waits for in-flight ones to finish. Resolves once traffic is held;
   * throws (with traffic released) when the drain times out or the hold ended meanwhile.
   */
  async hold(request: HoldRequest): Promise<{ drainMs: number }> {
    if (this.active) {
      throw new BunkerError('locked', `traffic of environment "${this.environment}" is already held by another backup or restore`, {
        hint: 'Wait for that operation to finish, then retry.',
      });
    }
    const startedAt = performance.now();
    const hold: ActiveHold = {
      startedAt,
      drainMs: 0,
      queue: [],
      queuedTotal: 0,
      abandoned: 0,
      rejected: 0,
      timer: setTimeout(() => this.expire(hold), request.timeoutMs),
      onExpired: request.onExpired,
    };
    this.active = hold;
    for (const tunnel of this.tunnels) tunnel.pauseClient();
    this.options.log.debug(`gateway ${this.environment}: holding traffic, ${this.inFlight} request(s) in flight`);

    const drained = await this.waitDrained(request.drainTimeoutMs);
    if (this.active !== hold) {
      throw new BunkerError('aborted', `the traffic hold of environment "${this.environment}" ended before in-flight requests drained`);
    }
    if (!drained) {
      const stuck = this.inFlight;
      this.release();
      throw new BunkerError(
        'timeout',
        `${stuck} in-flight request(s) of environment "${this.environment}" did not finish within ${request.drainTimeoutMs} ms, so traffic was released without a consistent point`,
        { hint: 'Look for long-running requests (long polls, streamed responses), raise the drain timeout, or take a --live backup.' },
      );
    }
    hold.drainMs = performance.now() - startedAt;
    return { drainMs: hold.drainMs };
  }

  /** Forwards every held request (in arrival order) and reports the hold; null when nothing was held. */
  release(): HoldReport | null {
    const hold = this.active;
    if (!hold) return null;
    this.active = null;
    clearTimeout(hold.timer);
    this.drainWaiter?.(false);
    for (const tunnel of this.tunnels) tunnel.resumeClient();
    const queue = hold.queue;
    hold.queue = [];
    for (const waiting of queue) waiting.start();
    this.totals.held += queue.length;
    const report: HoldReport = {
      pauseMs: Math.round((performance.now() - hold.startedAt) * 10) / 10,
      heldRequests: queue.length,
      rejectedRequests: hold.rejected,
      drainMs: Math.round(hold.drainMs * 10) / 10,
      abandonedRequests: hold.abandoned,
    };
    if (hold.rejected > 0) {
      this.options.log.warn(
        `gateway ${this.environment}: ${hold.rejected} request(s) got 503 because the held queue was full (${this.options.maxHeldRequests})`,
      );
    }
    this.options.log.info(
      `gateway ${this.environment}: released after ${report.pauseMs} ms (drain ${report.drainMs} ms), ${report.heldRequests} request(s) held`,
    );
    return report;
  }

  async close(): Promise<void> {
    this.release();
    for (const tunnel of this.tunnels) tunnel.destroy();
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeIdleConnections();
    // Give in-flight requests a moment to finish, then cut what is left.
    const grace = new Promise<void>((resolve) => setTimeout(resolve, 2_000).unref());
    await Promise.race([closed, grace]);
    this.server.closeAllConnections();
    await closed;
    this.agent.destroy();
  }

  private expire(hold: ActiveHold): void {
    if (this.active !== hold) return;
    const report = this.release();
    this.options.log.warn(`gateway ${this.environment}: the hold timeout passed, so traffic was released without the holder`);
    if (report) hold.onExpired?.(report);
  }

  private waitDrained(timeoutMs: number): Promise<boolean> {
    if (this.inFlight === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => settle(false), timeoutMs);
      const settle = (drained: boolean) => {
        clearTimeout(timer);
        this.drainWaiter = null;
        resolve(drained);
      };
      this.drainWaiter = settle;
    });
  }

  private requestDone(): void {
    this.inFlight--;
    if (this.inFlight === 0) this.drainWaiter?.(true);
  }

  /** Queues a request while held; false when the queue is full (the caller then turns it away). */
  private enqueue(hold: ActiveHold, start: () => void, onGone: (cb: () => void) => void): boolean {
    if (hold.queue.length >= this.options.maxHeldRequests) {
      hold.rejected++;
      this.totals.rejected++;
      return false;
    }
    let started = false;
    const waiting: Waiting = {
      start: () => {
        started = true;
        start();
      },
    };
    hold.queue.push(waiting);
    hold.queuedTotal++;
    onGone(() => {
      // The client gave up while waiting: forget it so it neither counts against the bound nor gets forwarded.
      if (started) return;
      const i = hold.queue.indexOf(waiting);
      if (i >= 0) {
        hold.queue.splice(i, 1);
        hold.abandoned++;
      }
    });
    return true;
  }

  private onRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
    const hold = this.active;
    if (!hold) return this.forward(req, res);
    const queued = this.enqueue(hold, () => this.forward(req, res), (cb) => res.once('close', cb));
    if (!queued) {
      res.writeHead(503, { 'retry-after': '1', 'content-type': 'text/plain; charset=utf-8', connection: 'close' });
      res.end(`bunker gateway: environment "${this.environment}" is briefly paused for a backup and its waiting queue is full; retry shortly\n`);
    }
  }

  private forward(req: http.IncomingMessage, res: http.ServerResponse): void {
    if (res.destroyed) return;
    this.inFlight++;
    this.totals.forwarded++;
    res.once('close', () => this.requestDone());
    this.attempt(req, res, performance.now() + this.options.upstreamRetryMs, 50);
  }

  /**
   * The upstream request for a client request: end-to-end headers plus X-Forwarded-*. Upgrades keep
   * their Upgrade/Connection headers and get a connection of their own (the socket becomes a tunnel).
   */
  private upstreamRequest(req: http.IncomingMessage, upgrade: boolean): http.ClientRequest {
    const upstream = this.options.upstream;
    const headers = endToEndHeaders(req.headers, upgrade);
    addForwardedHeaders(headers, req.socket.remoteAddress, req.headers.host);
    return this.requestFn({
      protocol: upstream.protocol,
      hostname: upstream.hostname,
      port: upstream.port,
      method: req.method,
      path: req.url,
      headers,
      agent: upgrade ? false : this.agent,
    });
  }

  private attempt(req: http.IncomingMessage, res: http.ServerResponse, deadline: number, retryDelay: number): void {
    const preq = this.upstreamRequest(req, false);
    let bodyStarted = false;
    let gotResponse = false;
    // The body is read only once the upstream connection exists, so a refused connection leaves it
    // untouched and the request can be retried against a restarting application.
    const sendBody = () => {
      if (bodyStarted) return;
      bodyStarted = true;
      if (req.readableEnded) preq.end();
      else req.pipe(preq);
    };
    preq.on('socket', (socket: Socket) => {
      if (socket.connecting) socket.once('connect', sendBody);
      else sendBody();
    });
    const onClientGone = () => {
      if (!res.writableFinished) preq.destroy();
    };
    res.once('close', onClientGone);

    preq.on('response', (pres) => {
      gotResponse = true;
      res.writeHead(pres.statusCode ?? 502, pres.statusMessage, endToEndHeaders(pres.headers));
      pres.pipe(res);
      pres.on('error', () => res.destroy());
      pres.on('aborted', () => res.destroy());
    });

    preq.on('error', (err: NodeJS.ErrnoException) => {
      res.off('close', onClientGone);
      req.unpipe(preq);
      if (res.destroyed || res.writableEnded) return;
      const bodyless = !req.headers['transfer-encoding'] && (req.headers['content-length'] ?? '0') === '0';
      const retriable =
        !gotResponse &&
        (!bodyStarted || (preq.reusedSocket && err.code === 'ECONNRESET' && bodyless && IDEMPOTENT.has(req.method ?? '')));
      if (retriable && performance.now() + retryDelay < deadline) {
        setTimeout(() => this.attempt(req, res, deadline, Math.min(retryDelay * 2, 1_000)), retryDelay);
        return;
      }
      this.totals.upstreamErrors++;
      this.options.log.warn(`gateway ${this.environment}: upstream ${redactUrl(this.options.upstream.href)} failed: ${err.code ?? err.message}`);
      if (res.headersSent) {
        res.destroy();
        return;
      }
      res.writeHead(502, { 'content-type': 'text/plain; charset=utf-8', connection: 'close' });
      res.end(`bunker gateway: the application of environment "${this.environment}" did not answer (${err.code ?? 'error'})\n`);
    });
  }

  private onUpgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => socket.destroy());
    const hold = this.active;
    if (!hold) return this.forwardUpgrade(req, socket, head);
    const queued = this.enqueue(hold, () => this.forwardUpgrade(req, socket, head), (cb) => socket.once('close', cb));
    if (!queued) socket.end('HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
  }

  private forwardUpgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    if (socket.destroyed) return;
    const upstream = this.options.upstream;
    this.inFlight++;
    this.totals.forwarded++;
    let counted = true;
    const done = () => {
      if (!counted) return;
      counted = false;
      this.requestDone();
    };
    const preq = this.upstreamRequest(req, true);
    socket.once('close', () => {
      done();
      preq.destroy();
    });
    preq.on('upgrade', (pres, upSocket: Socket, upHead: Buffer) => {
      done();
      upSocket.setNoDelay(true);
      socket.write(rawResponseHead(101, pres.statusMessage ?? 'Switching Protocols', pres.rawHeaders));
      if (upHead.length) socket.write(upHead);
      if (head.length) upSocket.write(head);
      const tunnel: Tunnel = new Tunnel(socket, upSocket, () => this.tunnels.delete(tunnel));
      this.tunnels.add(tunnel);
      if (this.active) tunnel.pauseClient();
    });
    preq.on('response', (pres) => {
      // The application declined the upgrade: pass its answer on and close (the body ends at close).
      done();
      const raw: string[] = [];
      const drop = new Set(['connection', 'transfer-encoding', 'content-length', 'keep-alive']);
      for (let i = 0; i + 1 < pres.rawHeaders.length; i += 2) {
        const name = pres.rawHeaders[i]!;
        if (!drop.has(name.toLowerCase())) raw.push(name, pres.rawHeaders[i + 1]!);
      }
      raw.push('connection', 'close');
      socket.write(rawResponseHead(pres.statusCode ?? 502, pres.statusMessage ?? '', raw));
      pres.pipe(socket);
    });
    preq.on('error', (err: NodeJS.ErrnoException) => {
      done();
      this.totals.upstreamErrors++;
      this.options.log.warn(`gateway ${this.environment}: upgrade to ${redactUrl(upstream.href)} failed: ${err.code ?? err.message}`);
      if (socket.writable) socket.end('HTTP/1.1 502 Bad Gateway\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
    });
    preq.end();
  }
}
