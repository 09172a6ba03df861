// The gateway's latency overhead when not holding: wrk against a small Node application directly and
// through the gateway, alternating, same run. Prints p50/p99 of each and the difference.
// Usage: node bench/gateway-overhead.mjs   (needs `npm run build` and wrk; bench/gateway-overhead.sh does both)
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { median } from './lib/stats.mjs';

const DURATION = process.env.BENCH_SECONDS ?? '8';
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);

/** Runs a Node snippet in its own process (application and gateway each get their own event loop). */
function startProcess(code) {
  const child = spawn(process.execPath, ['--input-type=module', '-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    child.stdout.once('data', (d) => resolve({ child, address: String(d).trim() }));
    child.once('exit', (c) => reject(new Error(`process exited (${c})`)));
  });
}

const app = await startProcess(`
  import http from 'node:http';
  const body = JSON.stringify({ ok: true, note: 'x'.repeat(200) });
  const s = http.createServer((req, res) => { res.setHeader('content-type', 'application/json'); res.end(body); });
  s.keepAliveTimeout = 65000;
  s.listen(0, '127.0.0.1', () => process.stdout.write('127.0.0.1:' + s.address().port + '\\n'));
`);
const stateDir = mkdtempSync(join(tmpdir(), 'bunker-gw-bench-'));
const gatewayModule = new URL('../dist/gateway/index.js', import.meta.url).href;
const gw = await startProcess(`
  const { startGateways } = await import(${JSON.stringify(gatewayModule)});
  const log = { debug() {}, info() {}, warn() {}, error() {} };
  const g = await startGateways([{ environment: 'bench', listen: '127.0.0.1:0', upstream: 'http://${app.address}' }], { stateDir: ${JSON.stringify(stateDir)}, log });
  process.stdout.write(g.addresses.bench + '\\n');
`);

function wrk(address, connections) {
  const out = execFileSync('wrk', ['-t1', `-c${connections}`, `-d${DURATION}s`, '--latency', `http://${address}/`], { encoding: 'utf8' });
  const ms = (label) => {
    const m = new RegExp(`^\\s*${label}\\s+([\\d.]+)(us|ms|s)`, 'm').exec(out);
    if (!m) throw new Error(`no ${label} in wrk output:\n${out}`);
    return Number(m[1]) * { us: 0.001, ms: 1, s: 1000 }[m[2]];
  };
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1]);
  const errors = /Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)/.exec(out)?.[0] ?? 'none';
  return { p50: ms('50%'), p99: ms('99%'), rps, errors };
}

const rows = [];
try {
  for (const connections of [1, 16]) {
    const direct = [];
    const proxied = [];
    for (let round = 0; round < ROUNDS; round++) {
      direct.push(wrk(app.address, connections));
      proxied.push(wrk(gw.address, connections));
    }
    const pick = (runs, k) => median(runs.map((r) => r[k]));
    rows.push({
      connections,
      directP50: pick(direct, 'p50'), gatewayP50: pick(proxied, 'p50'),
      directP99: pick(direct, 'p99'), gatewayP99: pick(proxied, 'p99'),
      directRps: pick(direct, 'rps'), gatewayRps: pick(proxied, 'rps'),
      errors: [...direct, ...proxied].map((r) => r.errors).filter((e) => e !== 'none'),
    });
  }
} finally {
  app.child.kill();
  gw.child.kill();
  rmSync(stateDir, { recursive: true, force: true });
}

const f = (x) => x.toFixed(3);
console.log(`wrk -t1 -d${DURATION}s, median of ${ROUNDS} alternating rounds; latencies in ms`);
console.log('conns | direct p50 | gateway p50 | +p50 | direct p99 | gateway p99 | +p99 | direct req/s | gateway req/s | ratio');
for (const r of rows) {
  console.log(
    `${r.connections} | ${f(r.directP50)} | ${f(r.gatewayP50)} | ${f(r.gatewayP50 - r.directP50)} | ${f(r.directP99)} | ${f(r.gatewayP99)} | ${f(r.gatewayP99 - r.directP99)} | ${Math.round(r.directRps)} | ${Math.round(r.gatewayRps)} | ${(r.gatewayRps / r.directRps).toFixed(2)}` +
      (r.errors.length ? ` | errors: ${r.errors.join('; ')}` : ''),
  );
}
