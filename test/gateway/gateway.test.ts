// The gateway against a real application on a real port: proxying, streaming, keep-alive, WebSockets,
// and the traffic hold (drain, bounded queue, timeouts, holder death, application death).
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { silentLogger } from '../../src/core/log.js';
import { isBunkerError } from '../../src/core/errors.js';
import { gatewayStatus, holdTraffic, parseListen, startGateways, type RunningGateways } from '../../src/gateway/index.js';
import { transpileGateway } from './helpers/compile.js';
import { startUpstream, type TestUpstream } from './helpers/upstream.js';

const ENV = 'production';
let stateDir: string;
let upstream: TestUpstream;
let gw: RunningGateways;
let base: string;

async function openGateway(options: { maxHeldRequests?: number; upstreamRetryMs?: number } = {}): Promise<void> {
  gw = await startGateways([{ environment: ENV, listen: '127.0.0.1:0', upstream: upstream.url }], { stateDir, log: silentLogger, ...options });
  base = `http://${gw.addresses[ENV]}`;
}

/** Resolves to 'pending' when `p` has not settled within ms. */
async function settledWithin<T>(p: Promise<T>, ms: number): Promise<T | 'pending'> {
  return Promise.race([p, new Promise<'pending'>((r) => setTimeout(() => r('pending'), ms))]);
}

/** Waits until `n` requests wait in the held queue (requests take a moment to arrive on a busy machine). */
async function waitQueued(n: number): Promise<void> {
  const deadline = Date.now() + 15_000;
  let queued = 0;
  while (Date.now() < deadline) {
    queued = (await gatewayStatus(stateDir, ENV))?.queued ?? 0;
    if (queued >= n) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`only ${queued} of ${n} requests reached the held queue`);
}

async function text(path: string, init?: RequestInit): Promise<{ status: number; body: string; headers: Headers }> {
  const res = await fetch(base + path, init);
  return { status: res.status, body: await res.text(), headers: res.headers };
}

beforeAll(async () => {
  stateDir = mkdtempSync(join(tmpdir(), 'bunker-gw-'));
});
afterAll(() => rmSync(stateDir, { recursive: true, force: true }));

afterEach(async () => {
  await gw?.close();
  await upstream?.stop();
});

describe('proxying', () => {
  beforeAll(() => {});

  it('forwards method, path and end-to-end headers; drops hop-by-hop ones; keeps repeated response headers', async () => {
    upstream = await startUpstream();
    await openGateway();
    const body = await new Promise<{ status: number; headers: http.IncomingHttpHeaders; json: any }>((resolve, reject) => {
      const req = http.request(`${base}/echo?x=1`, {
        method: 'DELETE',
        headers: { 'x-custom': 'kept', connection: 'keep-alive, x-per-hop', 'x-per-hop': 'dropped', 'proxy-authorization': 'Basic zzz' },
      });
      req.on('response', (res) => {
        let data = '';
        res.on('data', (d) => (data += d));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, json: JSON.parse(data) }));
      });
      req.on('error', reject);
      req.end();
    });
    expect(body.status).toBe(200);
    expect(body.json.method).toBe('DELETE');
    expect(body.json.url).toBe('/echo?x=1');
    expect(body.json.headers['x-custom']).toBe('kept');
    expect(body.json.headers['x-per-hop']).toBeUndefined();
    expect(body.json.headers['proxy-authorization']).toBeUndefined();
    expect(body.json.headers['x-forwarded-for']).toBe('127.0.0.1');
    expect(body.json.headers.host).toBe(gw.addresses[ENV]);
    expect(body.headers['set-cookie']).toEqual(['a=1', 'b=2']);
    expect(body.headers['x-upstream']).toBe('yes');
  });

  it('streams a large request body and a large response without changing a byte', async () => {
    upstream = await startUpstream();
    await openGateway();
    const payload = randomBytes(24 << 20);
    const res = await text('/hash', { method: 'POST', body: payload });
    expect(JSON.parse(res.body)).toEqual({ size: payload.length, sha256: createHash('sha256').update(payload).digest('hex') });
    const big = await fetch(`${base}/big?bytes=${30 << 20}`);
    expect((await big.arrayBuffer()).byteLength).toBe(30 << 20);
  });

  it('passes response chunks on as they come (no buffering)', async () => {
    upstream = await startUpstream();
    await openGateway();
    const res = await fetch(`${base}/stream?ms=1500`);
    const reader = res.body!.getReader();
    const started = Date.now();
    const first = await reader.read();
    expect(Buffer.from(first.value!).toString()).toBe('first\n');
    expect(Date.now() - started).toBeLessThan(1000);
    let rest = '';
    for (let r = await reader.read(); !r.done; r = await reader.read()) rest += Buffer.from(r.value).toString();
    expect(rest).toBe('last\n');
  });

  it('keeps upstream connections alive across requests', async () => {
    upstream = await startUpstream();
    await openGateway();
    for (let i = 0; i < 30; i++) expect((await text('/echo')).status).toBe(200);
    expect(upstream.hits.get('/echo')).toBe(30);
    expect(upstream.connections).toBeLessThanOrEqual(2);
  });

  it('tunnels WebSockets, and passes a refused upgrade on', async () => {
    upstream = await startUpstream();
    await openGateway();
    const ws = new WebSocket(`ws://${gw.addresses[ENV]}/ws`);
    await new Promise((resolve, reject) => (ws.once('open', resolve), ws.once('error', reject)));
    const reply = new Promise<string>((resolve) => ws.once('message', (d) => resolve(String(d))));
    ws.send('hello');
    expect(await reply).toBe('echo:hello');
    ws.close();
    const refused = new WebSocket(`ws://${gw.addresses[ENV]}/nope`);
    const status = await new Promise<number>((resolve) => refused.once('unexpected-response', (_req, res) => resolve(res.statusCode!)));
    expect(status).toBe(404);
  });

  it('answers 502 when the application is down and stays down', async () => {
    upstream = await startUpstream();
    await openGateway({ upstreamRetryMs: 300 });
    await upstream.stop();
    const res = await text('/echo');
    expect(res.status).toBe(502);
    expect(res.body).toContain('did not answer');
  });

  it('rejects a malformed listen address and a second gateway for the same environment', async () => {
    expect(() => parseListen('localhost')).toThrow(/not an address/);
    expect(parseListen(':8080')).toEqual({ host: undefined, port: 8080 });
    expect(parseListen('[::1]:0')).toEqual({ host: '::1', port: 0 });
    upstream = await startUpstream();
    await openGateway();
    const second = startGateways([{ environment: ENV, listen: '127.0.0.1:0', upstream: upstream.url }], { stateDir, log: silentLogger });
    await expect(second).rejects.toSatisfy((e) => isBunkerError(e, 'locked'));
  });
});

describe('holding traffic', () => {
  it('returns null when no gateway runs for the environment', async () => {
    expect(await holdTraffic({ stateDir, environment: 'nowhere', log: silentLogger })).toBeNull();
  });

  it('holds new requests until release, drains in-flight ones first, and loses none', async () => {
    upstream = await startUpstream();
    await openGateway();
    const slow = text('/slow?ms=400');
    await new Promise((r) => setTimeout(r, 50));
    const t0 = Date.now();
    const hold = await holdTraffic({ stateDir, environment: ENV, log: silentLogger });
    expect(hold).not.toBeNull();
    // The hold is established only after the in-flight slow request finished.
    expect(Date.now() - t0).toBeGreaterThanOrEqual(300);
    expect(await settledWithin(slow, 0)).toMatchObject({ status: 200, body: 'slow done' });

    const before = upstream.hits.get('/echo') ?? 0;
    const held = Array.from({ length: 20 }, (_, i) => text(`/echo?i=${i}`));
    await waitQueued(20);
    expect(await settledWithin(Promise.race(held), 300)).toBe('pending');
    expect(upstream.hits.get('/echo') ?? 0).toBe(before);

    const report = await hold!.release();
    const results = await Promise.all(held);
    expect(results.map((r) => r.status)).toEqual(Array(20).fill(200));
    results.forEach((r, i) => expect(JSON.parse(r.body).url).toBe(`/echo?i=${i}`));
    expect(report.heldRequests).toBe(20);
    expect(report.rejectedRequests).toBe(0);
    expect(report.pauseMs).toBeGreaterThanOrEqual(300);
    expect(report.drainMs).toBeGreaterThanOrEqual(250);
  });

  it('holds WebSocket messages and upgrades too', async () => {
    upstream = await startUpstream();
    await openGateway();
    const ws = new WebSocket(`ws://${gw.addresses[ENV]}/ws`);
    await new Promise((resolve) => ws.once('open', resolve));
    const hold = await holdTraffic({ stateDir, environment: ENV, log: silentLogger });
    const reply = new Promise<string>((resolve) => ws.once('message', (d) => resolve(String(d))));
    ws.send('during hold');
    const late = new WebSocket(`ws://${gw.addresses[ENV]}/ws`);
    const lateOpen = new Promise((resolve) => late.once('open', resolve));
    expect(await settledWithin(reply, 300)).toBe('pending');
    expect(await settledWithin(lateOpen, 0)).toBe('pending');
    await hold!.release();
    expect(await reply).toBe('echo:during hold');
    await lateOpen;
    ws.close();
    late.close();
  });

  it('bounds the held queue: the excess gets 503 with Retry-After and is counted', async () => {
    upstream = await startUpstream();
    await openGateway({ maxHeldRequests: 3 });
    const hold = await holdTraffic({ stateDir, environment: ENV, log: silentLogger });
    const requests = Array.from({ length: 5 }, () => text('/echo'));
    await waitQueued(3);
    for (let i = 0; i < 500 && ((await gatewayStatus(stateDir, ENV))?.rejected ?? 0) < 2; i++) await new Promise((r) => setTimeout(r, 20));
    const rejected = await Promise.all(requests.map((r) => settledWithin(r, 1_000)));
    const turnedAway = rejected.filter((r) => typeof r !== 'string');
    expect(turnedAway).toHaveLength(2);
    for (const r of turnedAway) {
      expect(r.status).toBe(503);
      expect(r.headers.get('retry-after')).toBe('1');
    }
    const report = await hold!.release();
    expect((await Promise.all(requests)).filter((r) => r.status === 200)).toHaveLength(3);
    expect(report).toMatchObject({ heldRequests: 3, rejectedRequests: 2 });
  });

  it('refuses a second hold while one is active', async () => {
    upstream = await startUpstream();
    await openGateway();
    const first = await holdTraffic({ stateDir, environment: ENV, log: silentLogger });
    await expect(holdTraffic({ stateDir, environment: ENV, log: silentLogger })).rejects.toSatisfy((e) => isBunkerError(e, 'locked'));
    await first!.release();
    const again = await holdTraffic({ stateDir, environment: ENV, log: silentLogger });
    await again!.release();
  });

  it('fails the hold and releases traffic when in-flight requests do not drain in time', async () => {
    upstream = await startUpstream();
    await openGateway();
    const slow = text('/slow?ms=6000');
    await new Promise((r) => setTimeout(r, 50));
    await expect(holdTraffic({ stateDir, environment: ENV, log: silentLogger, drainTimeoutMs: 200 })).rejects.toSatisfy((e) =>
      isBunkerError(e, 'timeout'),
    );
    // Traffic flows again at once (the slow request is still in flight; margin for a busy machine).
    expect(await settledWithin(text('/echo'), 3_000)).toMatchObject({ status: 200 });
    expect((await slow).status).toBe(200);
  });

  it('releases by itself after the hold timeout, and release() then fails the operation', async () => {
    upstream = await startUpstream();
    await openGateway();
    const hold = await holdTraffic({ stateDir, environment: ENV, log: silentLogger, timeoutMs: 400 });
    const t0 = Date.now();
    const held = await text('/echo');
    expect(held.status).toBe(200);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(300);
    await expect(hold!.release()).rejects.toSatisfy((e) => isBunkerError(e, 'timeout'));
    expect((await gatewayStatus(stateDir, ENV))?.holding).toBe(false);
  });

  it('forgets a held request whose client gave up', async () => {
    upstream = await startUpstream();
    await openGateway();
    const hold = await holdTraffic({ stateDir, environment: ENV, log: silentLogger });
    const controller = new AbortController();
    const gone = fetch(`${base}/echo`, { signal: controller.signal }).then(
      () => 'answered',
      () => 'aborted',
    );
    await waitQueued(1);
    controller.abort();
    expect(await gone).toBe('aborted');
    await new Promise((r) => setTimeout(r, 100));
    const report = await hold!.release();
    expect(report).toMatchObject({ heldRequests: 0, abandonedRequests: 1 });
    await new Promise((r) => setTimeout(r, 100));
    expect(upstream.hits.get('/echo') ?? 0).toBe(0);
  });

  it('releases at once when the holding process is killed with SIGKILL', async () => {
    upstream = await startUpstream();
    await openGateway();
    const js = transpileGateway(join(stateDir, 'js'));
    const script = `
      const { holdTraffic } = await import(${JSON.stringify(js)});
      const log = { debug() {}, info() {}, warn() {}, error() {} };
      await holdTraffic({ stateDir: ${JSON.stringify(stateDir)}, environment: ${JSON.stringify(ENV)}, log, timeoutMs: 30000 });
      process.stdout.write('held\\n');
      setInterval(() => {}, 1000);
    `;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (d) => String(d).includes('held') && resolve());
      child.once('exit', (code) => reject(new Error(`holder exited early (${code})`)));
    });
    const held = Array.from({ length: 10 }, () => text('/echo'));
    await waitQueued(10);
    expect(await settledWithin(Promise.race(held), 300)).toBe('pending');
    const killedAt = Date.now();
    child.kill('SIGKILL');
    const results = await Promise.all(held);
    expect(results.every((r) => r.status === 200)).toBe(true);
    // Far below the 30 s hold timeout: the closed control connection released the hold.
    expect(Date.now() - killedAt).toBeLessThan(5_000);
  });

  it('loses no held request when the application dies during the hold and comes back', async () => {
    upstream = await startUpstream();
    await openGateway({ upstreamRetryMs: 10_000 });
    expect((await text('/echo')).status).toBe(200); // a kept-alive upstream connection exists now
    const hold = await holdTraffic({ stateDir, environment: ENV, log: silentLogger });
    const held = Array.from({ length: 15 }, (_, i) => text(`/echo?i=${i}`));
    await waitQueued(15);
    await upstream.stop();
    await new Promise((r) => setTimeout(r, 100));
    const report = await hold!.release();
    expect(report.heldRequests).toBe(15);
    await new Promise((r) => setTimeout(r, 600)); // the application restarts
    await upstream.start();
    const results = await Promise.all(held);
    expect(results.map((r) => r.status)).toEqual(Array(15).fill(200));
    results.forEach((r, i) => expect(JSON.parse(r.body).url).toBe(`/echo?i=${i}`));
  });
});
