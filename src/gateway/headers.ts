// Hop-by-hop header handling (RFC 9110 §7.6.1): these headers describe one connection, so a proxy
// must not forward them; the Connection header may name more of them.
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';

const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  // The gateway's own HTTP server already answered "100 Continue" to the client.
  'expect',
]);

function namedByConnection(headers: IncomingHttpHeaders): Set<string> {
  const value = headers.connection;
  const out = new Set<string>();
  if (!value) return out;
  for (const token of value.split(',')) {
    const name = token.trim().toLowerCase();
    if (name) out.add(name);
  }
  return out;
}

/** End-to-end headers only; `keepUpgrade` keeps Connection/Upgrade for a WebSocket handshake. */
export function endToEndHeaders(headers: IncomingHttpHeaders, keepUpgrade = false): OutgoingHttpHeaders {
  const extra = namedByConnection(headers);
  const out: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    if (HOP_BY_HOP.has(name) || extra.has(name)) continue;
    out[name] = value;
  }
  if (keepUpgrade && headers.upgrade) {
    out.connection = 'Upgrade';
    out.upgrade = headers.upgrade;
  }
  return out;
}

/** Appends the client's address to X-Forwarded-For and records the original host and protocol. */
export function addForwardedHeaders(out: OutgoingHttpHeaders, clientAddress: string | undefined, host: string | undefined): void {
  const prior = out['x-forwarded-for'];
  const chain = [prior, clientAddress].filter((v): v is string => typeof v === 'string' && v.length > 0);
  if (chain.length) out['x-forwarded-for'] = chain.join(', ');
  if (host && out['x-forwarded-host'] === undefined) out['x-forwarded-host'] = host;
  if (out['x-forwarded-proto'] === undefined) out['x-forwarded-proto'] = 'http';
}

/** A raw HTTP/1.1 response head for a socket taken over by an upgrade (no ServerResponse exists then). */
export function rawResponseHead(status: number, statusMessage: string, rawHeaders: string[]): string {
  let head = `HTTP/1.1 ${status} ${statusMessage}\r\n`;
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) head += `${rawHeaders[i]}: ${rawHeaders[i + 1]}\r\n`;
  return head + '\r\n';
}
